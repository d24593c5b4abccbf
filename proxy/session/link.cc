#include "proxy/session/link.h"

#include <utility>

namespace pgshift::proxy {

Link::Queued Link::Expect(ExpectedReply reply, const std::shared_ptr<MirrorBatch>& batch) {
  ExpectedReply* queued = nullptr;
  bool added_units = true;
  if (reply.joins_open && !replies.empty() && replies.back().open) {
    queued = &replies.back();
    added_units = !reply.units.empty();
    for (ReplyUnit& unit : reply.units) queued->units.push_back(std::move(unit));
    queued->open = reply.open;
    // pgshift's Sync splitting the batch (Planner::SplitBatch).
    if (reply.continues) {
      queued->continues = true;
      queued->group = reply.group;
    }
  } else {
    queued = &replies.emplace_back(std::move(reply));
  }
  if (added_units && (batch || queued->mirror)) {
    // A place in the batch for each mirrored result. (A batch spanning
    // steps keeps the one its first step attached.)
    if (!queued->mirror) queued->mirror = batch;
    MirrorBatch& to = *queued->mirror;
    for (ReplyUnit& unit : queued->units) {
      if (unit.describe || !unit.shape.remote || unit.mirror_index >= 0) continue;
      unit.mirror_index = static_cast<int32_t>(to.rows.size());
      to.rows.push_back({unit.shape.remote, "[", 0, {}});
    }
  }
  if (queued->mirror) queued->mirror->group = queued->group;
  if (queued->open) return {};
  ++forward_pending;
  return {true, queued->mirror};
}

}  // namespace pgshift::proxy
