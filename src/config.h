// Internal header. The one place that asks what the system has; other files
// test these macros instead of platform names.
#ifndef SMTPD_CONFIG_H
#define SMTPD_CONFIG_H

#if defined(__linux__)
#define SMTPD_HAVE_EPOLL 1
#endif

#if defined(__has_include)
#if __has_include(<sys/event.h>)
#define SMTPD_HAVE_KQUEUE 1
#endif
#endif

#if defined(__linux__)
#define SMTPD_HAVE_ACCEPT4 1
#define SMTPD_HAVE_PDEATHSIG 1  // prctl(PR_SET_PDEATHSIG)
#define SMTPD_HAVE_REUSEPORT_LB 1  // SO_REUSEPORT spreads connections
#endif

#ifndef SMTPD_VERSION
#define SMTPD_VERSION "1.0.0"
#endif

#endif
