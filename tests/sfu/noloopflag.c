/* LD_PRELOAD shim for tests only: clears IFF_LOOPBACK in getifaddrs(), so that Janus
 * (libnice) gathers 127.0.0.1 host candidates inside a loopback-only network namespace.
 * Build: gcc -shared -fPIC -O2 -o noloopflag.so noloopflag.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stddef.h>

int getifaddrs(struct ifaddrs **ifap) {
    int (*real)(struct ifaddrs **) = (int (*)(struct ifaddrs **))dlsym(RTLD_NEXT, "getifaddrs");
    int rc = real(ifap);
    if (rc == 0)
        for (struct ifaddrs *i = *ifap; i != NULL; i = i->ifa_next)
            i->ifa_flags &= ~IFF_LOOPBACK;
    return rc;
}
