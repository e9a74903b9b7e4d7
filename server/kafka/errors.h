#ifndef TALLY_SERVER_KAFKA_ERRORS_H_
#define TALLY_SERVER_KAFKA_ERRORS_H_

// Translation of librdkafka errors into absl::Status. This is the only place where
// rd_kafka_resp_err_t and rd_kafka_error_t become Status; everything above the Kafka adapters sees
// Status codes chosen by what the caller should do:
//   UNAVAILABLE          retry the call (transport, timeouts, leader or coordinator moving, full
//                        local queue, broker throttling);
//   ABORTED              retry the unit of work: abort the Kafka transaction, or rejoin the group,
//                        and start the batch again;
//   FAILED_PRECONDITION  do not retry with this client: it was fenced by a newer instance, or hit
//                        a fatal error; recreate it (and re-check ownership) first;
//   NOT_FOUND            the topic or partition does not exist (auto creation is off);
//   ALREADY_EXISTS       the topic already exists;
//   INVALID_ARGUMENT     a bad request or configuration (fix the input);
//   PERMISSION_DENIED / UNAUTHENTICATED  authorization / authentication failures;
//   OUT_OF_RANGE         an offset outside the log, or the end of a partition;
//   UNIMPLEMENTED        the broker or librdkafka lacks the feature;
//   UNKNOWN              anything else.
// Messages read "<context>: <reason> (<ERROR_NAME>)", so logs keep librdkafka's error name.
//
// All functions are thread-safe.

#include <librdkafka/rdkafka.h>

#include <string_view>

#include "absl/status/status.h"

namespace tally::kafka {

// The Status code for `err` by the table above. RD_KAFKA_RESP_ERR_NO_ERROR maps to kOk.
absl::StatusCode KafkaStatusCode(rd_kafka_resp_err_t err);

// OkStatus() for RD_KAFKA_RESP_ERR_NO_ERROR, else a Status with KafkaStatusCode(err) and the
// message "<context>: <reason> (<ERROR_NAME>)". `reason` is `detail` if not empty (for example a
// broker's per-topic error string), else librdkafka's description of `err`.
absl::Status KafkaStatus(rd_kafka_resp_err_t err, std::string_view context,
                         std::string_view detail = {});

// An rd_kafka_error_t (the transactional and newer APIs) as a Status, with its retry flags kept.
struct KafkaError {
  absl::Status status;
  bool retriable = false;           // rd_kafka_error_is_retriable: retry the same call
  bool txn_requires_abort = false;  // abort the transaction, then retry it
  bool fatal = false;               // the client instance is unusable; recreate it
};

// Takes ownership of `error` and destroys it. nullptr means success (OkStatus, no flags).
// The code honours the flags first, in this order: fatal → FAILED_PRECONDITION,
// txn_requires_abort → ABORTED, retriable → UNAVAILABLE; otherwise KafkaStatusCode() of the
// error's code. The message lists the flags that are set, e.g.
// "commit transaction: Producer fenced by newer instance (_FENCED) [fatal]".
KafkaError TakeKafkaError(rd_kafka_error_t* error, std::string_view context);

// TakeKafkaError(error, context).status: takes ownership of `error` and destroys it.
absl::Status KafkaStatus(rd_kafka_error_t* error, std::string_view context);

}  // namespace tally::kafka

#endif  // TALLY_SERVER_KAFKA_ERRORS_H_
