"""Discarding server class for the Python reference, used by run_bench.py.

    python3.11 -W ignore -m smtpd -n -c benchsink.Sink 127.0.0.1:PORT

with this folder on PYTHONPATH. process_message keeps nothing and returns
None ("250 OK"), so the run measures the reference's protocol engine, not
its printing. python-smtpd-debug (-c DebuggingServer) measures the printing
too, which is what build/smtpd -c DebuggingServer does.
"""
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import smtpd


class Sink(smtpd.SMTPServer):
    def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
        return None
