// A shadow read, the session's half: whether an execution of a shadowed
// read is in the sample, and the client's result kept as the client gets it
// for the comparison (proxy/shadow_runner.h), which is queued once the
// result is complete.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/error_fields.h"
#include "proxy/shadow_runner.h"
#include "routing/router.h"

namespace pgshift::proxy {

class ShadowCapture {
 public:
  // Whether this execution of a shadowed read is in the sample and can be
  // compared (one that calls a volatile function is counted skipped).
  static bool Sampled(const routing::PlanPtr& plan);
  // A sampled execution is compared off the client's path, unless the
  // transaction has written one of its tables (`written`: the other side
  // cannot see those writes; counted as skipped). When its results come as
  // text the client's result is kept (the capture returned); else the job
  // is queued at once, and the comparison reads both sides.
  static std::shared_ptr<ShadowCapture> Start(const routing::PlanPtr& plan,
                                              std::shared_ptr<const std::string> bind,
                                              const std::vector<routing::TableCounters*>& written,
                                              ShadowRunner* shadow);

  // The client's RowDescription or DataRow (the whole message).
  void Keep(std::string_view message);
  // The read failed: the comparison expects the same error.
  void Failed(const protocol::ErrorFields& error);
  // The result is complete (or, `incomplete`, cut short): the comparison
  // is queued, once.
  void Queue(ShadowRunner* shadow, bool incomplete = false);
  // Queued: the rest of the reply is not the capture's.
  bool queued() const { return queued_; }

 private:
  ShadowJob job_;
  std::shared_ptr<routing::ResultSet> result_ = std::make_shared<routing::ResultSet>();
  // Past the worker's shadow_max_bytes the result is let go and the read
  // counted skipped.
  ShadowBytes bytes_;
  bool too_large_ = false;
  bool usable_ = true;  // else (cut short) the comparison reads both sides
  bool queued_ = false;
};

}  // namespace pgshift::proxy
