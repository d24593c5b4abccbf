#include "proxy/status.h"

#include "common/json.h"
#include "common/strings.h"
#include "proxy/backend_query.h"
#include "proxy/control_connection.h"
#include "proxy/flip.h"
#include "proxy/packet_buffer.h"
#include "routing/mirror.h"

namespace pgshift::proxy {

namespace {

using Rows = std::vector<std::vector<std::optional<std::string>>>;

int64_t Int(const std::optional<std::string>& text) {
  int64_t n = 0;
  if (text) ParseInt(*text, n);
  return n;
}

// The key as one text value: "5", or "(5,a)" for a composite key.
std::string KeyAsText(const routing::TableConfig& t) {
  std::string columns;
  for (const std::string& k : t.key)
    columns = StrCat(columns, columns.empty() ? "" : ", ", routing::QuoteIdent(k));
  // Named apart from the key columns, so that ORDER BY orders by their values.
  return StrCat(t.key.size() == 1 ? StrCat(columns, "::text") : StrCat("ROW(", columns, ")::text"),
                " AS pgshift_largest_key");
}

// One query per fact, each answering one row (or none).
struct StatusQueries {
  Stream& old;
  PacketBuffer buffer;

  absl::Status failed;  // the first query that failed, when it was required

  // `required` false: a fact that may be missing (old's table gone after
  // new-only) reads as no row.
  awaitable<Rows> Query(std::string sql, bool required = true) {
    auto result = co_await RunQuery(old, buffer, sql);
    if (!result.ok() && required && failed.ok()) failed = result.status();
    co_return result.ok() ? result->rows : Rows();
  }

  // The newest record of `kind` on the table in pgshift_state (`also`: a
  // further condition): `columns` of it, or no row.
  awaitable<Rows> Newest(const std::string& table, std::string_view kind, std::string_view columns,
                         std::string_view also = "") {
    // Named locals: GCC 12 mishandles temporaries in co_await operands.
    std::string sql =
        StrCat("SELECT ", columns, " FROM pgshift_state WHERE table_name = ", QuoteLiteral(table),
               " AND kind = ", QuoteLiteral(kind), also, " ORDER BY id DESC LIMIT 1");
    co_return co_await Query(sql);
  }

  awaitable<void> Read(const routing::TableConfig& t, TableStatus& status, bool have_state) {
    if (have_state) {
      std::string to = StrCat(" AND detail->>'to' = ", QuoteLiteral(routing::PhaseName(t.phase)));
      Rows since = co_await Newest(t.name, "phase", "recorded_at::text", to);
      if (!since.empty()) status.since = since[0][0].value_or("");
    }
    if (status.since.empty()) {
      // A coordinated fleet records when each flip took effect (on old,
      // unless [coordination] names another server).
      // Asked apart: a statement naming a table that does not exist fails
      // however it is guarded (before any proxy ran, say).
      std::string exists = "SELECT to_regclass('pgshift_phases') IS NOT NULL";
      Rows coordinated = co_await Query(exists);
      if (!coordinated.empty() && coordinated[0][0] == "t") {
        std::string sql = StrCat("SELECT changed_at::text FROM pgshift_phases WHERE table_name = ",
                                 QuoteLiteral(t.name));
        Rows since = co_await Query(sql);
        if (!since.empty()) status.since = since[0][0].value_or("");
      }
    }
    if (have_state) {
      // Every key range's checkpoint (migration/range_ledger.h), summed
      // (an earlier pgshift's single checkpoint until a command upgrades
      // it); the key is the one most recently saved, the rate that of the
      // ranges whose workers still hold them.
      std::string sql = StrCat(
          "SELECT sum((detail->>'rows')::bigint), bool_and(coalesce((detail->>'done')::boolean, "
          "false))::text, (array_agg((detail->'last_key')::text ORDER BY recorded_at DESC))[1], "
          "sum((detail->>'rate')::bigint) FILTER (WHERE detail->>'holder' IS NOT NULL AND "
          "(detail->>'lease_until')::timestamptz >= now() OR NOT detail ? 'lease_until'), "
          "max(recorded_at)::text, count(*), count(*) "
          "FILTER "
          "(WHERE coalesce((detail->>'done')::boolean, false)) FROM pgshift_state WHERE "
          "table_name = ",
          QuoteLiteral(t.name),
          " AND kind IN ('backfill_range', 'backfill_checkpoint') HAVING count(*) > 0");
      Rows checkpoint = co_await Query(sql);
      if (!checkpoint.empty()) {
        const auto& r = checkpoint[0];
        status.backfill =
            BackfillProgress{Int(r[0]), r[1] == "true",    r[2].value_or(""), "",       0,
                             Int(r[3]), r[4].value_or(""), Int(r[5]),         Int(r[6])};
      }
      Rows verify = co_await Newest(
          t.name, "verify",
          "recorded_at::text, detail->>'rows', detail->>'missing', detail->>'extra', "
          "detail->>'different', coalesce((detail->>'repaired')::boolean, false)::text");
      if (!verify.empty()) {
        const auto& r = verify[0];
        status.verify = VerifyResult{r[0].value_or(""), Int(r[1]), Int(r[2]),
                                     Int(r[3]),         Int(r[4]), r[5] == "true"};
      }
    }
    // How far a backfill has to go: old's largest key, and its size.
    if (!t.key.empty() && (status.backfill || t.phase == routing::Phase::kDualWrite)) {
      const std::string table = routing::QuoteQualified(t.name);
      std::string order;
      for (const std::string& k : t.key)
        order =
            StrCat(order, order.empty() ? "" : ", ", routing::QuoteIdent(k), " DESC NULLS LAST");
      std::string sql =
          StrCat("SELECT (SELECT ", KeyAsText(t), " FROM ", table, " ORDER BY ", order,
                 " LIMIT 1), (SELECT greatest(reltuples, 0)::bigint::text FROM pg_catalog.pg_class "
                 "WHERE oid = ",
                 QuoteLiteral(table), "::pg_catalog.regclass)");
      Rows extent = co_await Query(sql, /*required=*/false);
      if (!extent.empty()) {
        if (!status.backfill) status.backfill = BackfillProgress{};
        status.backfill->largest_key = extent[0][0].value_or("");
        status.backfill->estimate = Int(extent[0][1]);
      }
    }
  }
};

// What to run next: the remedy of the first rail not met, or the flip.
std::string NextCommand(const routing::Config& config, const StatusContext& context,
                        const TableStatus& s) {
  if (!s.next) return "";
  const std::string file = context.config_path.empty() ? "FILE" : context.config_path;
  const std::string on = StrCat(" --config ", file, " --table ", s.table);
  for (const RailVerdict& rail : s.rails) {
    if (rail.state == RailVerdict::kMet) continue;
    if (rail.rail == "a clean verify since dual-write") {
      if (!s.backfill || !s.backfill->done) return StrCat("pgshift backfill", on);
      return StrCat("pgshift verify", on, " --repair");
    }
    if (rail.rail == "shadow reads compared, few mismatched" &&
        rail.state == RailVerdict::kNotMet) {
      if (s.shadow && s.shadow->persistent > 0 && rail.why.find("above") != std::string::npos) {
        // The count since the phase began keeps them: repair, then count
        // afresh from a new entry into shadow-read.
        return StrCat("SHOW MISMATCHES on the admin console names their keys; pgshift verify", on,
                      " --repair; then back to dual-write and into shadow-read again");
      }
      return StrCat("let the application read through pgshift: ", rail.why);
    }
    return StrCat("see the guard rail: ", rail.why);
  }
  const std::string_view next = routing::PhaseName(*s.next);
  if (config.coordination.enabled) return StrCat("pgshift phase", on, " --to ", next);
  return StrCat("set phase = \"", next, "\" for ", s.table, " in ", file,
                ", then reload (kill -HUP the pgshift process, or RELOAD on its admin console)");
}

std::string BackfillText(const TableStatus& s) {
  if (!s.backfill) return "-";
  const BackfillProgress& b = *s.backfill;
  if (b.done) return StrCat("done: ", b.rows, " rows (saved ", b.saved_at, ")");
  if (b.saved_at.empty()) {
    return StrCat("not started (old holds about ", b.estimate, " rows, largest key ",
                  b.largest_key.empty() ? "none" : b.largest_key, ")");
  }
  std::string eta = b.rate > 0 && b.estimate > b.rows
                        ? StrCat(", ETA ", (b.estimate - b.rows) / b.rate, " s")
                        : "";
  // Workers share key ranges: how many are done says more than one's key.
  std::string where = b.ranges > 1 ? StrCat(b.ranges_done, " of ", b.ranges, " key ranges done")
                                   : StrCat("at key ", b.last_key, " of ", b.largest_key);
  return StrCat(b.rows, " of about ", b.estimate, " rows, ", where, ", ", b.rate, " rows/s", eta,
                " (saved ", b.saved_at, ")");
}

std::string VerifyText(const TableStatus& s) {
  if (!s.verify) return "none recorded";
  const VerifyResult& v = *s.verify;
  const int64_t differences = v.missing + v.extra + v.different;
  if (differences == 0) return StrCat(v.at, ": clean, ", v.rows, " rows");
  return StrCat(v.at, ": ", differences, " differences (", v.missing, " missing, ", v.extra,
                " extra, ", v.different, " different)", v.repaired ? ", repaired" : "");
}

double MismatchRate(const ShadowEvidence& e) {
  return e.compared ? static_cast<double>(e.persistent) / static_cast<double>(e.compared) : 0;
}

std::string ShadowText(const TableStatus& s) {
  if (s.phase != routing::Phase::kShadowRead && s.phase != routing::Phase::kNewPrimary) return "-";
  if (!s.shadow) return "not known here (see SHOW STATUS on an instance)";
  return StrCat(s.shadow->compared, " compared, ", s.shadow->persistent,
                " persistent mismatches (rate ", MismatchRate(*s.shadow), ") since it entered ",
                routing::PhaseName(s.phase));
}

std::string_view RailState(const RailVerdict& r) {
  switch (r.state) {
    case RailVerdict::kMet: return "met";
    case RailVerdict::kNotMet: return "not met";
    case RailVerdict::kUnknown: return "unknown";
  }
  return "";
}

std::string RailText(const RailVerdict& r) {
  return StrCat("[", RailState(r), "] ", r.rail, r.numbers.empty() ? "" : StrCat(": ", r.numbers),
                r.why.empty() ? "" : StrCat(": ", r.why));
}

}  // namespace

absl::StatusOr<std::vector<TableStatus>> ReadStatus(const routing::Config& config,
                                                    const StatusContext& context,
                                                    asio::ssl::context& tls) {
  using Result = absl::StatusOr<std::vector<TableStatus>>;
  Result read = RunToCompletion<Result>([&]() -> awaitable<Result> {
    auto opened = co_await OpenControlConnection(config, config.old_backend, "old", tls);
    if (!opened.ok()) co_return opened.status();
    StatusQueries queries{**opened, PacketBuffer(), absl::OkStatus()};
    std::string sql = "SELECT to_regclass('pgshift_state') IS NOT NULL";
    Rows state = co_await queries.Query(sql);
    const bool have_state = !state.empty() && state[0][0] == "t";
    std::vector<TableStatus> tables;
    for (const routing::TableConfig& t : config.tables) {
      TableStatus& s = tables.emplace_back();
      s.table = t.name;
      s.phase = t.phase;
      co_await queries.Read(t, s, have_state);
      if (context.evidence) {
        auto found = context.evidence->find(t.name);
        s.shadow = found == context.evidence->end() ? ShadowEvidence{} : found->second;
      }
      if (t.phase != routing::Phase::kNewOnly) {
        s.next = static_cast<routing::Phase>(static_cast<int>(t.phase) + 1);
      }
    }
    (*opened)->Close();
    if (!queries.failed.ok()) co_return queries.failed;
    co_return tables;
  });
  if (!read.ok()) return read;
  for (TableStatus& s : *read) {
    if (!s.next) continue;
    auto next = WithTablePhase(config, s.table, *s.next);
    if (!next.ok()) return next.status();
    s.rails =
        JudgeRails(**next, PhaseChange{s.table, s.phase, *s.next, false}, context.evidence, tls);
    s.command = NextCommand(config, context, s);
  }
  return read;
}

std::string StatusText(const std::vector<TableStatus>& tables) {
  std::string out;
  for (const TableStatus& s : tables) {
    out += StrCat(s.table, ": ", routing::PhaseName(s.phase),
                  s.since.empty() ? "" : StrCat(" since ", s.since), "\n");
    out += StrCat("  backfill: ", BackfillText(s), "\n");
    out += StrCat("  verify:   ", VerifyText(s), "\n");
    out += StrCat("  shadow:   ", ShadowText(s), "\n");
    if (!s.next) {
      out += "  next:     none (new-only is the last phase)\n";
      continue;
    }
    out += StrCat("  next:     ", routing::PhaseName(*s.next), "\n");
    for (const RailVerdict& r : s.rails) out += StrCat("    ", RailText(r), "\n");
    out += StrCat("  run:      ", s.command, "\n");
  }
  return out;
}

std::string StatusJson(const std::vector<TableStatus>& tables) {
  return StrCat("{\"tables\":", StatusTablesJson(tables), "}\n");
}

std::string StatusTablesJson(const std::vector<TableStatus>& tables) {
  std::string out = "[";
  for (size_t i = 0; i < tables.size(); ++i) {
    const TableStatus& s = tables[i];
    out += StrCat(i ? "," : "", "{\"table\":", JsonString(s.table),
                  ",\"phase\":", JsonString(routing::PhaseName(s.phase)),
                  ",\"since\":", s.since.empty() ? "null" : JsonString(s.since), ",\"backfill\":");
    if (const auto& b = s.backfill) {
      out += StrCat(
          "{\"rows\":", b->rows, ",\"done\":", b->done ? "true" : "false",
          ",\"last_key\":", b->last_key.empty() ? "null" : b->last_key,
          ",\"largest_key\":", JsonString(b->largest_key),
          ",\"saved_at\":", b->saved_at.empty() ? "null" : JsonString(b->saved_at),
          ",\"estimated_rows\":", b->estimate, ",\"rate\":", b->rate, ",\"ranges\":", b->ranges,
          ",\"ranges_done\":", b->ranges_done, ",\"eta_seconds\":",
          b->rate > 0 && b->estimate > b->rows ? StrCat((b->estimate - b->rows) / b->rate) : "null",
          "}");
    } else {
      out += "null";
    }
    out += ",\"verify\":";
    if (const auto& v = s.verify) {
      out +=
          StrCat("{\"at\":", JsonString(v->at), ",\"rows\":", v->rows, ",\"missing\":", v->missing,
                 ",\"extra\":", v->extra, ",\"different\":", v->different,
                 ",\"repaired\":", v->repaired ? "true" : "false", "}");
    } else {
      out += "null";
    }
    out += ",\"shadow\":";
    if (const auto& e = s.shadow) {
      out += StrCat("{\"compared\":", e->compared, ",\"persistent\":", e->persistent,
                    ",\"mismatch_rate\":", MismatchRate(*e), "}");
    } else {
      out += "null";
    }
    out += StrCat(",\"next\":", s.next ? JsonString(routing::PhaseName(*s.next)) : "null",
                  ",\"guard_rails\":[");
    for (size_t r = 0; r < s.rails.size(); ++r) {
      const RailVerdict& v = s.rails[r];
      out += StrCat(r ? "," : "", "{\"rail\":", JsonString(v.rail),
                    ",\"state\":", JsonString(RailState(v)), ",\"why\":", JsonString(v.why),
                    ",\"numbers\":", JsonString(v.numbers), "}");
    }
    out += StrCat("],\"command\":", JsonString(s.command), "}");
  }
  return out + "]";
}

std::vector<std::string> StatusColumns() {
  return {"table", "phase", "since", "backfill", "verify", "shadow", "next", "guard_rails", "run"};
}

std::vector<std::vector<std::string>> StatusRows(const std::vector<TableStatus>& tables) {
  std::vector<std::vector<std::string>> rows;
  for (const TableStatus& s : tables) {
    std::string rails;
    for (const RailVerdict& r : s.rails)
      rails = StrCat(rails, rails.empty() ? "" : "; ", RailText(r));
    rows.push_back({s.table, std::string(routing::PhaseName(s.phase)), s.since, BackfillText(s),
                    VerifyText(s), ShadowText(s),
                    s.next ? std::string(routing::PhaseName(*s.next)) : "", rails, s.command});
  }
  return rows;
}

}  // namespace pgshift::proxy
