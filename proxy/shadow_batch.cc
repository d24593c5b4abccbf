// Reads whose client result was kept: one read each on the other side,
// sent in batches. Under load most comparisons are these, and one write of
// many reads costs the server (and pgshift) a fraction of as many round
// trips: on one database the shadow reads share the server with the
// clients' own.
#include <algorithm>

#include "proxy/log.h"
#include "proxy/server.h"
#include "proxy/shadow_runner.h"

namespace pgshift::proxy {

bool ShadowRunner::Batched(const ShadowJob& job) {
  // A read that calls functions is followed by DISCARD ALL: read alone.
  return job.served != nullptr && !job.alone && !job.plan->shadow->calls_functions;
}

size_t ShadowRunner::BatchAtFront() const {
  const routing::BackendId side = queue_.front().plan->shadow->server;
  size_t n = 0;
  while (n < queue_.size() && n < kBatchReads && Batched(queue_[n]) &&
         queue_[n].plan->shadow->server == side) {
    ++n;
  }
  return n;
}

awaitable<void> ShadowRunner::RunBatch(std::vector<ShadowJob> jobs) {
  const routing::BackendId side = jobs.front().plan->shadow->server;
  Comparing run(Bytes());
  run.discard = false;
  bool connected = co_await Borrow(run, side);
  if (!connected) {
    for (const ShadowJob& job : jobs) Dropped(*job.plan->shadow, "no connection");
    GiveSlot();
    co_return;
  }
  // One transaction up to one Sync: the server flushes its replies once
  // for the batch. A read's error skips the reads after it.
  std::string out;
  for (size_t i = 0; i < jobs.size(); ++i) {
    AppendRead(run, side, out, jobs[i].plan->shadow->sql, jobs[i].bind, i + 1 == jobs.size());
  }
  co_await Send(run, side, out);  // a failed write leaves no stream: the batch is lost
  std::vector<routing::ResultSet> results = co_await Collect(run, side);
  std::vector<ShadowJob> again;
  for (size_t i = 0; i < jobs.size(); ++i) {
    ShadowJob& job = jobs[i];
    if (run.lost || !run.skipped_because.empty() || i >= results.size()) {
      // Not run (the connection was lost, or an earlier read failed), or
      // not all of it kept (which read's is not known): read again on its
      // own, where such a read gets its own verdict.
      job.alone = true;
      again.push_back(std::move(job));
      continue;
    }
    if (MatchesServed(job, results[i])) continue;
    job.served.reset();  // its bytes go back to the worker's budget
    job.served_bytes.Release();
    again.push_back(std::move(job));
  }
  run.reading.Release();
  if (results.size() < jobs.size() || !results.back().error_sqlstate.empty()) {
    // A failed read skipped the rest of the batch, Closes of prepared
    // statements among it: a fresh connection forgets what they left.
    if (Connection* c = run.connections[static_cast<int>(side)].get()) c->stream.reset();
  }
  GiveBack(run);
  // A difference may be a write that came in between: those are read on
  // both sides next (Compare without a served result), first in line.
  for (auto job = again.rbegin(); job != again.rend(); ++job) queue_.push_front(std::move(*job));
  GiveSlot();
  if (!again.empty()) wake_.cancel();
}

}  // namespace pgshift::proxy
