// Backend to client, for one link: each message is classified against the
// reply the link expects (reply_classifier.h) and the decision applied:
// passed on, dropped, reshaped into what the client's own statement would
// have answered (its command tag, no pgshift columns, no rows when it
// asked for none), its mirrored rows collected, a sampled read's result
// kept, a refusal's probe error replaced, or an internal exchange's reply
// kept for pgshift. Replies of a mirrored cycle wait in its MirrorBatch.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "protocol/frame.h"
#include "proxy/forward_list.h"
#include "proxy/session/expected_reply.h"
#include "proxy/session/link.h"
#include "proxy/session/refusals.h"
#include "proxy/session/reply_classifier.h"

namespace pgshift::proxy {

class ShadowRunner;

class ReplyRelay : public protocol::FrameHandler {
 public:
  // What the relay tells its session as reply cycles end.
  class Listener {
   public:
    virtual ~Listener() = default;
    // One of pgshift's own exchanges has its reply.
    virtual void OnInternalAnswered() = 0;
    // The client's reply cycle `reply` ended with `status`. `forwarded`:
    // its ReadyForQuery goes to the client now (not held with a mirror, nor
    // a part of a Query that the next part carries on).
    virtual void OnClientAnswered(const ExpectedReply& reply, protocol::TransactionStatus status,
                                  bool forwarded) = 0;
  };

  // `shadow` may be null (no shadow reads are compared).
  ReplyRelay(Link& link, Refusals& refusals, ShadowRunner* shadow, Listener& listener)
      : link_(link), refusals_(refusals), shadow_(shadow), listener_(listener) {}

  protocol::Delivery OnHeader(char type, size_t size) override;
  void OnStreamed(std::string_view bytes) override;
  void OnWhole(char type, std::string_view message) override;

  // Before each read.
  void Reset() {
    out.clear();
    answered = 0;
  }

  ForwardList out;        // for the client, from this read
  uint32_t answered = 0;  // the client's reply cycles completed in this read
  std::string error;      // an invalid message: the session ends

 private:
  ExpectedReply* Front() { return link_.replies.empty() ? nullptr : &link_.replies.front(); }
  void OnReadyForQuery(std::string_view message, std::string_view payload);
  void OnError(std::string_view message, std::string_view payload);
  void OnInternalRow(std::string_view payload);
  void OnRowDescription(std::string_view payload);
  void OnDataRow(std::string_view payload);
  void OnCommandComplete(std::string_view payload);
  void Capture(std::string_view message);
  void Emit(std::string_view bytes);
  void EmitOwned(std::string bytes);

  Link& link_;
  Refusals& refusals_;
  ShadowRunner* const shadow_;
  Listener& listener_;
  // The decision for the current message, and what it refers to.
  ReplyDecision decision_;
  routing::ResultShape shape_;  // of the current result, when reshaped
  // The current DataRow's mirrored rows, by index: a later step of its
  // batch may add rows (moving the vector) before the row is whole.
  std::shared_ptr<MirrorBatch> rows_batch_;
  size_t rows_index_ = 0;
  ShadowCapture* capture_ = nullptr;  // the current message's sampled read
  MirrorBatch* held_ = nullptr;       // the current cycle's replies wait here
};

}  // namespace pgshift::proxy
