#ifndef TALLY_CRABBITMQ_SHIM_H
#define TALLY_CRABBITMQ_SHIM_H
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <amqp_ssl_socket.h>
#include <amqp_framing.h>

/* amqp_login_with_properties is variadic, which Swift cannot call: PLAIN only. */
static inline amqp_rpc_reply_t tally_amqp_login_plain(
    amqp_connection_state_t state, const char *vhost, int channel_max, int frame_max,
    int heartbeat, const amqp_table_t *properties, const char *user, const char *password) {
  return amqp_login_with_properties(state, vhost, channel_max, frame_max, heartbeat,
                                    properties, AMQP_SASL_METHOD_PLAIN, user, password);
}

/* Answers a broker-initiated channel.close, which rabbitmq-c never does by itself. */
static inline int tally_amqp_send_channel_close_ok(amqp_connection_state_t state,
                                                   amqp_channel_t channel) {
  amqp_channel_close_ok_t ok = {0};
  return amqp_send_method(state, channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
}

/* Answers a broker-initiated connection.close. */
static inline int tally_amqp_send_connection_close_ok(amqp_connection_state_t state) {
  amqp_connection_close_ok_t ok = {0};
  return amqp_send_method(state, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
}
#endif
