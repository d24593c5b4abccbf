#include "proxy/plan_command.h"

#include <algorithm>

#include "absl/time/time.h"
#include "common/json.h"
#include "common/strings.h"
#include "proxy/backend_query.h"
#include "proxy/catalog_reader.h"
#include "proxy/control_connection.h"
#include "proxy/coordinator_connection.h"
#include "proxy/deadline.h"
#include "proxy/flip.h"
#include "proxy/instance_console.h"

namespace pgshift::proxy {

namespace {

// pgshift_fingerprints' rows summed over every instance and run.
constexpr const char* kFleetShapesSql =
    "SELECT fingerprint, min(query), min(tables), bool_or(writes), sum(executions), sum(refused), "
    "(extract(epoch FROM max(last_seen)) * 1000)::bigint FROM pgshift_fingerprints "
    "GROUP BY fingerprint";

absl::StatusOr<RecordedShapes> FleetShapes(const routing::Config& file, asio::ssl::context& tls) {
  using Result = absl::StatusOr<RecordedShapes>;
  return RunToCompletion<Result>([&]() -> awaitable<Result> {
    auto opened = co_await OpenCoordinator(file, tls);
    if (!opened.ok()) co_return opened.status();
    CoordinatorConnection c(std::move(*opened));
    Deadline deadline(*c.stream, file.coordination.lease_timeout_s);
    auto read = co_await c.Query(kFleetShapesSql);
    if (!read.ok()) co_return read.status();
    c.stream->Close();
    RecordedShapes shapes{{}, "every instance's, flushed to pgshift_fingerprints", std::nullopt, 0};
    for (const auto& r : read->rows) {
      routing::QueryFingerprints::Row row = ShapeOf(r, 1, 2, Text(r[3]) == "t");
      row.executions = CountOf(r[4]);
      row.refused = CountOf(r[5]);
      int64_t ms = 0;
      ParseInt(Text(r[6]), ms);
      row.last_seen_ms = ms;
      shapes.rows.push_back(std::move(row));
    }
    co_return shapes;
  });
}

absl::StatusOr<RecordedShapes> InstanceShapes(const routing::Config& file,
                                              asio::ssl::context& tls) {
  auto view = AskInstance(file, tls, /*shapes=*/true);
  if (!view.ok()) {
    return absl::Status(view.status().code(),
                        StrCat("without [coordination] the statements are recorded by the running "
                               "instance alone, and it cannot be asked: ",
                               MessageOf(view.status())));
  }
  return RecordedShapes{std::move(view->shapes),
                        StrCat("the instance's on ", view->address, " (SHOW QUERIES)"),
                        std::move(view->phases), 0};
}

std::string LastSeen(int64_t ms) {
  if (ms <= 0) return "";
  return absl::FormatTime("%Y-%m-%d %H:%M:%SZ", absl::FromUnixMillis(ms), absl::UTCTimeZone());
}

}  // namespace

absl::StatusOr<RecordedShapes> ReadRecordedShapes(const routing::Config& file,
                                                  asio::ssl::context& tls) {
  return file.coordination.enabled ? FleetShapes(file, tls) : InstanceShapes(file, tls);
}

void KeepSeenSince(RecordedShapes& shapes, absl::Duration since, absl::Time now) {
  const int64_t oldest_ms = absl::ToUnixMillis(now - since);
  auto stale = [&](const routing::QueryFingerprints::Row& r) {
    return r.last_seen_ms > 0 && r.last_seen_ms < oldest_ms;
  };
  const auto left = std::remove_if(shapes.rows.begin(), shapes.rows.end(), stale);
  const size_t left_out = static_cast<size_t>(shapes.rows.end() - left);
  shapes.rows.erase(left, shapes.rows.end());
  shapes.left_out += left_out;
  if (left_out == 0) return;
  shapes.source = StrCat(shapes.source, "; ", left_out, " shape", left_out == 1 ? "" : "s",
                         " last seen before ", LastSeen(oldest_ms), " left out (--since ",
                         absl::FormatDuration(since), ")");
}

size_t FlipPlan::refused() const {
  return static_cast<size_t>(std::count_if(rows.begin(), rows.end(),
                                           [](const routing::DryRunRow& r) { return r.refused; }));
}

absl::StatusOr<FlipPlan> PlanFlip(const routing::Config& running, std::string_view table,
                                  routing::Phase to, RecordedShapes shapes,
                                  asio::ssl::context& tls) {
  const routing::TableConfig* moved = running.FindTable(table);
  if (moved == nullptr) {
    return absl::NotFoundError(StrCat("table \"", table, "\" is not in ", running.source));
  }
  FlipPlan plan{moved->name, moved->phase, to, shapes.source, "", {}, shapes.left_out};
  auto target = TargetOfFlip(running, table, to);
  if (!target.ok()) {
    if (target.status().code() != absl::StatusCode::kFailedPrecondition) return target.status();
    plan.flip_refused = std::string(MessageOf(target.status()));
    return plan;
  }
  CatalogReadResult catalog = ReadCatalog(**target, tls);
  if (std::optional<std::string> why = CannotMove(catalog, *(*target)->FindTable(plan.table))) {
    plan.flip_refused = StrCat("the flip itself would be refused: ", *why);
    return plan;
  }
  plan.rows = routing::DryRun(*target, catalog.catalog, plan.table, shapes.rows);
  return plan;
}

std::string PlanText(const FlipPlan& plan) {
  std::string out = StrCat(plan.table, ": ", routing::PhaseName(plan.from), " -> ",
                           routing::PhaseName(plan.to), "\nrecorded: ", plan.source, "\n");
  if (!plan.flip_refused.empty()) return StrCat(out, "refused:  ", plan.flip_refused, "\n");
  if (plan.rows.empty()) {
    return StrCat(out, "no statement on ", plan.table,
                  plan.left_out ? " seen within --since" : " recorded yet",
                  ": nothing to judge the flip by\n");
  }
  size_t rewritten = 0;
  for (const routing::DryRunRow& r : plan.rows) {
    if (!r.refused && !r.detail.empty()) ++rewritten;
    out += StrCat("\n", routing::Verdict(r), " (", r.shape.writes ? "write" : "read", ", ",
                  r.shape.executions + r.shape.refused, " seen",
                  r.shape.last_seen_ms > 0 ? StrCat(", last ", LastSeen(r.shape.last_seen_ms)) : "",
                  "): ", r.shape.normalized, "\n");
    if (r.refused) {
      out += StrCat("  refusal:  ", r.detail, "\n");
      continue;
    }
    out += StrCat("  served by ", r.server, "\n");
    if (!r.detail.empty()) out += StrCat("  sent as:  ", r.detail, "\n");
    if (!r.mirrored.empty()) out += StrCat("  mirrored: ", r.mirrored, "\n");
    if (!r.shadowed.empty()) out += StrCat("  shadowed: ", r.shadowed, "\n");
  }
  const size_t refused = plan.refused();
  return StrCat(out, "\n", plan.rows.size(), " statement shapes: ", refused, " refused, ",
                rewritten, " rewritten, ", plan.rows.size() - refused - rewritten, " as sent\n");
}

std::string PlanJson(const FlipPlan& plan) {
  std::string out = StrCat("{\"table\":", JsonString(plan.table),
                           ",\"from\":", JsonString(routing::PhaseName(plan.from)),
                           ",\"to\":", JsonString(routing::PhaseName(plan.to)),
                           ",\"recorded\":", JsonString(plan.source), ",\"flip_refused\":",
                           plan.flip_refused.empty() ? "null" : JsonString(plan.flip_refused),
                           ",\"refused\":", plan.refused(), ",\"statements\":[");
  for (size_t i = 0; i < plan.rows.size(); ++i) {
    const routing::DryRunRow& r = plan.rows[i];
    out +=
        StrCat(i ? "," : "", "{\"verdict\":", JsonString(routing::Verdict(r)),
               ",\"kind\":", JsonString(r.shape.writes ? "write" : "read"),
               ",\"seen\":", r.shape.executions + r.shape.refused,
               ",\"last_seen\":", JsonString(LastSeen(r.shape.last_seen_ms)),
               ",\"query\":", JsonString(r.shape.normalized), ",\"server\":", JsonString(r.server),
               ",\"mirrored\":", JsonString(r.mirrored), ",\"shadowed\":", JsonString(r.shadowed),
               ",\"detail\":", JsonString(r.detail), "}");
  }
  return StrCat(out, "]}\n");
}

}  // namespace pgshift::proxy
