/*
 * ferry.h - the ferry client library.
 *
 * This skeleton holds the error table that the whole project shares; the
 * client API is documented and added by the client library.
 */
#ifndef FERRY_H
#define FERRY_H

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Errors.
 *
 * Every function that can fail returns an int: 0 (or a non-negative count)
 * on success, a negative number on failure. A failure is either a negated
 * errno value (-ECONNREFUSED, -ETIMEDOUT, ...) or one of the FERRY_E* codes
 * below, which sit in their own band from -1000 down.
 *
 * Codes -1001 to -1099 are the server's ErrorCode values from ferry.proto:
 * wire code N is reported as -(1000 + N). Codes from -1100 down are local to
 * the library. ferry_strerror() explains every code of both kinds.
 */
#define FERRY_EBASE 1000

#define FERRY_ERRNO_MAP(XX)                                                              \
    XX(EPROTOCOL, -1001, "protocol error")                                               \
    XX(EFRAMETOOLARGE, -1002, "frame too large")                                         \
    XX(EVERSION, -1003, "unsupported protocol version")                                  \
    XX(ENOTCONNECTED, -1004, "not connected: Connect must come first")                   \
    XX(EAUTH, -1005, "authentication failed")                                            \
    XX(EPERM, -1006, "permission denied")                                                \
    XX(EINVALIDTOPIC, -1007, "invalid topic")                                            \
    XX(EINVALIDPATTERN, -1008, "invalid subscription pattern")                           \
    XX(ELIMIT, -1009, "limit exceeded")                                                  \
    XX(ESLOWCONSUMER, -1010, "slow consumer: outbound buffer overflowed")                \
    XX(ESTORAGEFULL, -1011, "storage full")                                              \
    XX(ESTORAGE, -1012, "storage failed")                                                \
    XX(ENOSUB, -1013, "unknown subscription")                                            \
    XX(EDUPID, -1014, "id already in use")                                               \
    XX(EDURABLEINUSE, -1015, "durable consumer in use by another connection")           \
    XX(EKEEPALIVE, -1016, "keepalive timeout")                                           \
    XX(ESHUTDOWN, -1017, "server shutting down")                                         \
    XX(EINTERNAL, -1018, "internal server error")                                        \
    XX(EUNKNOWNMSG, -1019, "unknown or unexpected message")                              \
    XX(EINVAL, -1020, "invalid argument")                                                \
    XX(EAUTHTIMEOUT, -1021, "authentication timeout")                                    \
    XX(ENOTOPIC, -1022, "unknown topic")                                                 \
    XX(EBUSY, -1023, "server busy")                                                      \
    XX(ECLOSED, -1100, "client closed")                                                  \
    XX(ENOTREADY, -1101, "not connected to a server")

enum ferry_errno {
#define FERRY__ERRNO_ENUM(name, value, text) FERRY_##name = (value),
    FERRY_ERRNO_MAP(FERRY__ERRNO_ENUM)
#undef FERRY__ERRNO_ENUM
};

/* Map a wire ErrorCode (ferry.proto) to the library's negative code. */
#define FERRY_ERR_FROM_WIRE(code) (-(FERRY_EBASE + (int)(code)))

#ifdef __cplusplus
}
#endif

#endif /* FERRY_H */
