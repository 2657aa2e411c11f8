/* A tiny HTTP/1.0 server on lwIP (Debian liblwip-dev, unix port, tap interface).
 *
 * Why it exists: the timing tests need a real non-Linux TCP stack; lwIP runs in user space on a
 * tap device inside a lab namespace. Every connection: read until the end of a request header
 * (then answer and close: FIN_WAIT1 test) or until EOF (then close: LAST_ACK test).
 *
 * usage: PRECONFIGURED_TAPIF=tap0 lwip_server ADDRESS PORT      (prints "ready" when listening)
 * LWIP_MTU=N in the environment sets the netif MTU (runtime; lwIP derives the MSS it offers from it).
 * build: cc lwip_server.c -I/usr/include/lwip -llwip -lpthread
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lwip/api.h"
#include "lwip/ip4_addr.h"
#include "lwip/netif.h"
#include "lwip/tcpip.h"
#include "netif/tapif.h"

static struct netif tap;
static ip4_addr_t addr, mask, gw;

static void stack_ready(void *arg) {
    /* runs in the tcpip thread: the netif calls need no extra locking here */
    netif_add(&tap, &addr, &mask, &gw, NULL, tapif_init, tcpip_input);
    const char *mtu = getenv("LWIP_MTU");
    if (mtu && atoi(mtu) >= 68)
        tap.mtu = (u16_t)atoi(mtu);
    netif_set_default(&tap);
    netif_set_up(&tap);
    netif_set_link_up(&tap);
    sys_sem_signal((sys_sem_t *)arg);
}

static void serve(void *arg) {
    struct netconn *c = arg;
    struct netbuf *buf;
    char req[4096];
    size_t n = 0;
    while (netconn_recv(c, &buf) == ERR_OK) {
        do {
            void *data;
            u16_t len;
            netbuf_data(buf, &data, &len);
            if (n + len < sizeof req) {
                memcpy(req + n, data, len);
                n += len;
            }
        } while (netbuf_next(buf) >= 0);
        netbuf_delete(buf);
        req[n] = 0;
        if (strstr(req, "\r\n\r\n")) {
            static const char resp[] = "HTTP/1.0 200 OK\r\nServer: lwip-lab\r\nContent-Length: 16\r\n\r\nhello from lwIP\n";
            netconn_write(c, resp, sizeof resp - 1, NETCONN_COPY);
            break;
        }
    }
    netconn_close(c);
    netconn_delete(c);
}

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: %s ADDRESS PORT [GATEWAY]\n", argv[0]);
        return 2;
    }
    if (!ip4addr_aton(argv[1], &addr)) {
        fprintf(stderr, "bad address %s\n", argv[1]);
        return 2;
    }
    IP4_ADDR(&mask, 255, 255, 0, 0);
    IP4_ADDR(&gw, 0, 0, 0, 0);
    /* optional: a gateway for peers outside the /16 (an lwIP host behind a router) */
    if (argc == 4 && !ip4addr_aton(argv[3], &gw)) {
        fprintf(stderr, "bad gateway %s\n", argv[3]);
        return 2;
    }
    sys_sem_t ready;
    sys_sem_new(&ready, 0);
    tcpip_init(stack_ready, &ready);
    sys_sem_wait(&ready);
    struct netconn *l = netconn_new(NETCONN_TCP);
    if (l == NULL || netconn_bind(l, IP_ADDR_ANY, (u16_t)atoi(argv[2])) != ERR_OK || netconn_listen(l) != ERR_OK) {
        fprintf(stderr, "cannot listen on port %s\n", argv[2]);
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        struct netconn *c;
        if (netconn_accept(l, &c) == ERR_OK)
            sys_thread_new("conn", serve, c, 0, 0);
    }
}
