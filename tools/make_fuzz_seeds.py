#!/usr/bin/env python3
"""Writes fuzz/corpus seeds for fuzz/smtp_channel_fuzzer.cc from the client
side of the conformance scenarios (../shared/conformance/scenarios/*.scn).

One seed per connection of each dialogue scenario: two header bytes (the
fuzzer's configuration and how to cut the input into writes, chosen from the
scenario's arguments and write pattern) followed by every byte that client
wrote. Large repeated payloads are cut to keep seeds small.

Usage: tools/make_fuzz_seeds.py [SCENARIO_DIR [OUT_DIR]]
"""
import hashlib
import os
import re
import shlex
import sys

MAX_REPEAT = 2048        # bytes kept of one `sendrepeat`
MAX_SEED = 6144          # bytes of client data per seed
HALF_CLOSE = 8           # config bit: the fuzzer half-closes and reads all


def unescape(text):
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == '\\' and i + 1 < len(text):
            n = text[i + 1]
            if n in 'rnt\\':
                out += {'r': b'\r', 'n': b'\n', 't': b'\t', '\\': b'\\'}[n]
                i += 2
                continue
            if n == 'x' and re.fullmatch(r'[0-9A-Fa-f]{2}', text[i + 2:i + 4]):
                out.append(int(text[i + 2:i + 4], 16))
                i += 4
                continue
        out += c.encode('utf-8')
        i += 1
    return bytes(out)


def config_byte(args):
    """The fuzzer's server index (see World in the fuzzer) for these args."""
    utf8 = any(a in ('-u', '--smtputf8') for a in args)
    size = None
    for i, a in enumerate(args):
        if a in ('-s', '--size') and i + 1 < len(args):
            size = args[i + 1]
        elif a.startswith('--size='):
            size = a.split('=', 1)[1]
        elif a.startswith('-s') and len(a) > 2 and not a.startswith('--'):
            size = a[2:]
    try:
        n = int(size) if size is not None else None
    except ValueError:
        n = None
    if n == 0:
        index = 4
    elif n is not None and n <= 10:
        index = 6
    elif n is not None and n <= 32:
        index = 2
    elif n is not None and n <= 1048:
        index = 7
    else:
        index = 0
    if utf8 and index in (0, 2, 4):
        index += 1
    return index | HALF_CLOSE


def parse(path):
    """Returns (args, {connection: [bytes, split byte]}) or None."""
    args, conns, order, current, auto = [], {}, [], None, 0
    with open(path, encoding='utf-8') as f:
        for raw in f.read().split('\n'):
            line = raw.rstrip('\r').lstrip(' \t')
            if not line.strip() or line.startswith('#'):
                continue
            keyword, _, rest = line.partition(' ')
            keyword = keyword.lower()
            if keyword == 'cli':
                return None
            if keyword == 'args':
                args = shlex.split(rest)
            elif keyword in ('connect', 'connect-nowait'):
                name = rest.strip()
                if not name:
                    auto += 1
                    name = str(auto)
                current = name
                conns[name] = [b'', 0]
                order.append(name)
            elif keyword == 'use':
                current = rest.strip()
            elif current is None:
                continue
            elif keyword in ('send', 'bytewise', 'chunks', 'sendline', 'cmd'):
                if keyword == 'chunks':
                    size, _, rest = rest.partition(' ')
                    conns[current][1] = 0x80 | (int(size) & 0x3f)
                elif keyword == 'bytewise':
                    conns[current][1] = 0x40
                data = unescape(rest)
                if keyword in ('sendline', 'cmd'):
                    data += b'\r\n'
                conns[current][0] += data
            elif keyword == 'sendrepeat':
                count, _, text = rest.partition(' ')
                pattern = unescape(text)
                n = min(int(count), MAX_REPEAT)
                conns[current][0] += (pattern * (n // len(pattern) + 1))[:n]
    return args, [(n, conns[n]) for n in order]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    scen = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        here, '..', '..', 'shared', 'conformance', 'scenarios')
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        here, '..', 'fuzz', 'corpus')
    os.makedirs(out, exist_ok=True)
    written = set()
    for name in sorted(os.listdir(scen)):
        if not name.endswith('.scn'):
            continue
        parsed = parse(os.path.join(scen, name))
        if parsed is None:
            continue
        args, conns = parsed
        for conn, (data, split) in conns:
            if not data:
                continue
            seed = bytes([config_byte(args), split]) + data[:MAX_SEED]
            digest = hashlib.sha1(seed).hexdigest()[:12]
            if digest in written:
                continue
            written.add(digest)
            fname = '%s-%s' % (name[:-4], conn)
            with open(os.path.join(out, fname), 'wb') as f:
                f.write(seed)
    print('%d seeds in %s' % (len(written), out))


if __name__ == '__main__':
    main()
