#include "proxy/session/shadow_capture.h"

#include <algorithm>
#include <random>

#include "protocol/frame.h"
#include "protocol/message_type.h"
#include "protocol/messages/bind.h"
#include "protocol/messages/data_row.h"
#include "protocol/messages/row_description.h"
#include "proxy/log.h"

namespace pgshift::proxy {

bool ShadowCapture::Sampled(const routing::PlanPtr& plan) {
  if (!plan || !plan->shadow || plan->refusal) return false;
  thread_local std::mt19937_64 random(std::random_device{}());
  if (std::uniform_real_distribution<double>(0, 1)(random) >= plan->shadow->sample) return false;
  const routing::ShadowPlan& shadow = *plan->shadow;
  if (shadow.skip_reason.empty()) return true;
  shadow.Count(&routing::TableCounters::shadow_skipped);
  LogEvent(LogLevel::kDebug, "shadow_skipped",
           {{"table", shadow.table}, {"query", shadow.normalized}, {"reason", shadow.skip_reason}});
  return false;
}

std::shared_ptr<ShadowCapture> ShadowCapture::Start(
    const routing::PlanPtr& plan, std::shared_ptr<const std::string> bind,
    const std::vector<routing::TableCounters*>& written, ShadowRunner* shadow) {
  if (shadow == nullptr) return nullptr;
  const routing::ShadowPlan& shadowed = *plan->shadow;
  for (routing::TableCounters* t : shadowed.counters) {
    if (std::find(written.begin(), written.end(), t) != written.end()) {
      shadowed.Count(&routing::TableCounters::shadow_skipped);
      return nullptr;
    }
  }
  ShadowJob job{plan, bind, nullptr, {}, {}, {}, false};
  if (bind) {
    auto decoded = protocol::Bind::Decode(std::string_view(*bind).substr(protocol::kHeaderSize));
    bool text =
        decoded.ok() && std::all_of(decoded->result_formats.begin(), decoded->result_formats.end(),
                                    [](int16_t f) { return f == 0; });
    if (!text) {
      shadow->Enqueue(std::move(job));
      return nullptr;
    }
  }
  auto capture = std::make_shared<ShadowCapture>();
  capture->job_ = std::move(job);
  capture->bytes_ = shadow->Bytes();
  return capture;
}

void ShadowCapture::Keep(std::string_view message) {
  std::string_view payload = message.substr(protocol::kHeaderSize);
  if (message[0] == protocol::backend::kRowDescription) {
    auto description = protocol::RowDescription::Decode(payload);
    if (description.ok()) {
      for (const auto& f : description->fields) result_->columns.push_back({f.name, f.type_oid});
    }
    return;
  }
  if (!usable_) return;
  auto row = protocol::DataRow::Decode(payload);
  if (!row.ok()) return;
  if (bytes_.Take(routing::ResultSet::RowBytes(message.size(), row->values.size()))) {
    result_->rows.push_back(std::move(row->values));
  } else {
    usable_ = false;
    too_large_ = true;
    result_->rows = {};
    bytes_.Release();
  }
}

void ShadowCapture::Failed(const protocol::ErrorFields& error) {
  result_->error_sqlstate = std::string(error.sqlstate());
  result_->error_message = std::string(error.message());
}

void ShadowCapture::Queue(ShadowRunner* shadow, bool incomplete) {
  if (incomplete) usable_ = false;
  if (queued_) return;
  queued_ = true;
  if (shadow == nullptr) return;
  if (too_large_) {
    // Reading both sides would hold twice as much.
    const routing::ShadowPlan& plan = *job_.plan->shadow;
    plan.Count(&routing::TableCounters::shadow_skipped);
    LogEvent(LogLevel::kDebug, "shadow_skipped",
             {{"table", plan.table},
              {"query", plan.normalized},
              {"reason", "result above shadow_max_bytes"}});
    return;
  }
  if (usable_) {
    job_.served = std::move(result_);
    job_.served_bytes = std::move(bytes_);
  }
  shadow->Enqueue(std::move(job_));
}

}  // namespace pgshift::proxy
