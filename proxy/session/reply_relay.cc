#include "proxy/session/reply_relay.h"

#include "common/strings.h"
#include "protocol/messages/command_complete.h"
#include "protocol/messages/data_row.h"
#include "protocol/messages/empty.h"
#include "protocol/messages/error_response.h"
#include "protocol/messages/ready_for_query.h"
#include "protocol/messages/row_description.h"
#include "proxy/shadow_runner.h"
#include "routing/router.h"

namespace pgshift::proxy {

namespace {
namespace sqlstate = protocol::sqlstate;
using Action = ReplyAction;
using CaptureStep = ReplyDecision::CaptureStep;
}  // namespace

protocol::Delivery ReplyRelay::OnHeader(char type, size_t size) {
  link_.last_type = type;
  ExpectedReply* expected = Front();
  decision_ = ClassifyReply(expected, type, size, !refusals_.empty());
  held_ = decision_.held ? expected->mirror.get() : nullptr;
  rows_batch_.reset();
  capture_ = nullptr;
  if (decision_.action == Action::kInvalid) error = StrCat("invalid ReadyForQuery length ", size);
  if (decision_.unit >= 0) {
    const ReplyUnit& unit = expected->units[static_cast<size_t>(decision_.unit)];
    shape_ = unit.shape;
    switch (decision_.capture) {
      case CaptureStep::kNone: break;
      case CaptureStep::kKeep: capture_ = unit.capture.get(); break;
      case CaptureStep::kKeepNext:
        capture_ = expected->units[static_cast<size_t>(decision_.unit) + 1].capture.get();
        break;
      case CaptureStep::kIncomplete: unit.capture->Queue(shadow_, true); break;
      case CaptureStep::kComplete: unit.capture->Queue(shadow_); break;
    }
    if (decision_.action == Action::kCollectRows) {
      rows_batch_ = expected->mirror;
      rows_index_ = static_cast<size_t>(unit.mirror_index);
    }
  }
  if (decision_.statement_parsed) {
    auto it = link_.statements.find(expected->statement_key);
    if (it != link_.statements.end()) it->second.parsed = true;
  }
  if (expected != nullptr) Advance(decision_, *expected);
  return decision_.delivery();
}

void ReplyRelay::OnStreamed(std::string_view bytes) {
  if (decision_.action != Action::kInternal && decision_.action != Action::kDrop) Emit(bytes);
}

void ReplyRelay::OnWhole(char type, std::string_view message) {
  std::string_view payload = message.substr(protocol::kHeaderSize);
  switch (decision_.action) {
    case Action::kReadyForQuery: return OnReadyForQuery(message, payload);
    case Action::kInternalWhole:
      return type == protocol::backend::kDataRow ? OnInternalRow(payload)
                                                 : OnError(message, payload);
    case Action::kInspectError: return OnError(message, payload);
    case Action::kStripColumns: return OnRowDescription(payload);
    case Action::kCollectRows: return OnDataRow(payload);
    case Action::kCapture: return Capture(message);
    case Action::kReshapeTag: return OnCommandComplete(payload);
    case Action::kForward:
    case Action::kDrop:
    case Action::kInvalid:
    case Action::kInternal: return;  // streamed, never whole
  }
}

void ReplyRelay::OnReadyForQuery(std::string_view message, std::string_view payload) {
  auto ready = protocol::ReadyForQuery::Decode(payload);
  if (!ready.ok()) {
    error = std::string(MessageOf(ready.status()));
    return;
  }
  link_.transaction_status = ready->status;
  ExpectedReply reply;
  if (!link_.replies.empty()) {
    reply = std::move(link_.replies.front());
    link_.replies.pop_front();
  }
  if (reply.internal != nullptr) {
    reply.internal->done = true;
    listener_.OnInternalAnswered();
    return;
  }
  // A statement pgshift prepared whose Parse failed does not exist.
  if (reply.prepares && !reply.parse_completed) link_.statements.erase(reply.statement_key);
  ++answered;
  // Else the next part of the client's Query carries on.
  const bool ends_query = !reply.continues || reply.failed;
  bool forwarded = ends_query;
  if (reply.mirror) {
    // The session settles the mirror before the client goes on.
    MirrorBatch& batch = *reply.mirror;
    batch.outcome = reply.failed ? MirrorBatch::Outcome::kFailed : MirrorBatch::Outcome::kSucceeded;
    batch.status = ready->status;
    if (batch.holds_replies()) {
      if (ends_query) batch.HoldReply(message);
      batch.held_ready = ends_query;
      forwarded = false;
    }
  }
  listener_.OnClientAnswered(reply, ready->status, forwarded);
  if (forwarded) out.Add(message);
}

void ReplyRelay::OnError(std::string_view message, std::string_view payload) {
  auto fields = protocol::ErrorResponse::Decode(payload);
  if (!fields.ok()) {
    error = std::string(MessageOf(fields.status()));
    return;
  }
  if (decision_.action == Action::kInternalWhole) {
    InternalReply& reply = *link_.replies.front().internal;
    if (!reply.error) reply.error = *fields;
    return;
  }
  if (decision_.from_own_statement &&
      ((fields->sqlstate() == sqlstate::kFeatureNotSupported &&
        fields->message().starts_with("cached plan must not change result type")) ||
       fields->sqlstate() == sqlstate::kInvalidStatementName)) {
    // A table's columns changed under pgshift's prepared statement, or a
    // DEALLOCATE pgshift did not see (in a function) dropped it: it is
    // prepared again, under a new name, at the next execution.
    link_.statements.erase(link_.replies.front().statement_key);
  }
  if (capture_ != nullptr) {
    capture_->Failed(*fields);
    capture_->Queue(shadow_);
  }
  if (std::optional<protocol::ErrorFields> refusal = refusals_.Take(fields->message())) {
    std::string replaced;
    protocol::ErrorResponse(*refusal).Encode(replaced);
    return EmitOwned(std::move(replaced));
  }
  Emit(message);
}

// The first column of the first row of pgshift's own exchange.
void ReplyRelay::OnInternalRow(std::string_view payload) {
  auto row = protocol::DataRow::Decode(payload);
  if (row.ok() && !row->values.empty()) {
    link_.replies.front().internal->value = row->values[0].value_or("");
  }
}

// A Describe of a write that returns nothing gets NoData; otherwise
// pgshift's mirror columns are taken out.
void ReplyRelay::OnRowDescription(std::string_view payload) {
  std::string bytes;
  if (shape_.no_rows) {
    protocol::NoData{}.Encode(bytes);
    return EmitOwned(std::move(bytes));
  }
  auto description = protocol::RowDescription::Decode(payload);
  if (!description.ok() || description->fields.size() < 2) {
    error = description.ok() ? "a mirrored write's result lacks pgshift's columns"
                             : std::string(MessageOf(description.status()));
    return;
  }
  description->fields.resize(description->fields.size() - 2);
  description->Encode(bytes);
  EmitOwned(std::move(bytes));
}

// A row of a write mirrored across servers: pgshift's two columns (key,
// row as JSON) are kept for the mirror, the rest go on when the client
// asked for them.
void ReplyRelay::OnDataRow(std::string_view payload) {
  auto row = protocol::DataRow::Decode(payload);
  if (!row.ok() || row->values.size() < 2 || !row->values.back()) {
    error = row.ok() ? "a mirrored write's row lacks pgshift's columns"
                     : std::string(MessageOf(row.status()));
    return;
  }
  rows_batch_->KeepRow(rows_index_, *row->values.back(),
                       std::move(row->values[row->values.size() - 2]));
  if (shape_.no_rows) return;
  row->values.resize(row->values.size() - 2);
  std::string bytes;
  row->Encode(bytes);
  EmitOwned(std::move(bytes));
}

// A sampled read's RowDescription or DataRow: kept, and passed on as it is.
void ReplyRelay::Capture(std::string_view message) {
  capture_->Keep(message);
  Emit(message);
}

// The server's "SELECT n" for a rewritten write, as the write's own tag
// (none for a statement of pgshift's own); its rows counted.
void ReplyRelay::OnCommandComplete(std::string_view payload) {
  auto complete = protocol::CommandComplete::Decode(payload);
  if (!complete.ok()) {
    error = std::string(MessageOf(complete.status()));
    return;
  }
  std::string_view tag = complete->tag;
  std::string_view rows = tag.substr(tag.rfind(' ') + 1);
  uint64_t count = 0;
  if (shape_.counts_rows != nullptr && ParseInt(rows, count)) {
    shape_.counts_rows->rows_written.fetch_add(count, std::memory_order_relaxed);
  }
  if (shape_.hidden) return;
  protocol::CommandComplete reshaped;
  reshaped.tag = shape_.tag == "INSERT" ? StrCat("INSERT 0 ", rows) : StrCat(shape_.tag, " ", rows);
  std::string bytes;
  reshaped.Encode(bytes);
  EmitOwned(std::move(bytes));
}

// Replies go to the client, or wait with a mirrored cycle's.
void ReplyRelay::Emit(std::string_view bytes) {
  if (held_ != nullptr) {
    held_->HoldReply(bytes);
  } else {
    out.Add(bytes);
  }
}

void ReplyRelay::EmitOwned(std::string bytes) {
  if (held_ != nullptr) {
    held_->HoldReply(bytes);
  } else {
    out.AddOwned(std::move(bytes));
  }
}

}  // namespace pgshift::proxy
