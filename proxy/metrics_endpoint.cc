#include "proxy/metrics_endpoint.h"

#include <optional>

#include "common/strings.h"
#include "proxy/deadline.h"
#include "proxy/server.h"
#include "proxy/stats.h"
#include "proxy/status_page.h"

namespace pgshift::proxy {

namespace {

void Metric(std::string& out, std::string_view name, std::string_view type, std::string_view help,
            std::string_view value) {
  out += StrCat("# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n", name, " ", value,
                "\n");
}

// A label value with \, " and newline escaped.
std::string Label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

}  // namespace

std::string PrometheusText(Server& server) {
  Stats& s = server.stats();
  SettingsPtr settings = server.settings();
  std::string out;
  Metric(out, "pgshift_sessions", "gauge", "Client sessions open now.",
         StrCat(server.live_sessions()));
  Metric(out, "pgshift_sessions_total", "counter", "Client sessions that reached the backend.",
         StrCat(s.sessions_total.load()));
  Metric(out, "pgshift_login_failures_total", "counter", "Client logins refused.",
         StrCat(s.login_failures.load()));
  Metric(out, "pgshift_protocol_violations_total", "counter",
         "Sessions ended for a malformed message from either side.",
         StrCat(s.protocol_violations.load()));
  Metric(out, "pgshift_backend_failures_total", "counter",
         "Backend logins that failed and backend connections lost.",
         StrCat(s.backend_failures.load()));
  Metric(out, "pgshift_config_generation", "gauge",
         "Reloads applied since start (0 = the file read at start).",
         StrCat(settings->generation));

  out += "# HELP pgshift_table_phase The migration phase of each configured table (1 = current).\n"
         "# TYPE pgshift_table_phase gauge\n";
  for (const auto& t : settings->config->tables) {
    for (const auto& [name, phase] : routing::kPhaseNames) {
      out += StrCat("pgshift_table_phase{table=\"", Label(t.name), "\",phase=\"", name, "\"} ",
                    phase == t.phase ? "1" : "0", "\n");
    }
  }

  struct TableMetric {
    const char* name;
    const char* help;
    std::atomic<uint64_t> routing::TableCounters::*field;
  };
  for (const TableMetric& m :
       {TableMetric{"reads", "Statements run that read the table.", &routing::TableCounters::reads},
        TableMetric{"writes", "Statements run that wrote the table.",
                    &routing::TableCounters::writes},
        TableMetric{"refused", "Statements on the table that pgshift refused.",
                    &routing::TableCounters::refused},
        TableMetric{"rows_written", "Rows the table's mirrored writes returned.",
                    &routing::TableCounters::rows_written},
        TableMetric{"mirror_failures", "Mirrored writes whose apply on the other server failed.",
                    &routing::TableCounters::mirror_failures},
        TableMetric{"shadow_compared", "Shadow reads compared.",
                    &routing::TableCounters::shadow_compared},
        TableMetric{"shadow_matched", "Shadow reads whose two sides agreed.",
                    &routing::TableCounters::shadow_matched},
        TableMetric{"shadow_transient",
                    "Shadow reads that disagreed while a write was in flight and agreed when "
                    "read again.",
                    &routing::TableCounters::shadow_transient},
        TableMetric{"shadow_persistent",
                    "Shadow reads whose sides disagreed with no write in flight to explain it.",
                    &routing::TableCounters::shadow_persistent},
        TableMetric{"shadow_unstable",
                    "Shadow reads that disagreed and found no moment without a mirrored write in "
                    "flight to be judged by.",
                    &routing::TableCounters::shadow_unstable},
        TableMetric{"shadow_dropped", "Shadow reads dropped (queue full or no connection).",
                    &routing::TableCounters::shadow_dropped},
        TableMetric{"shadow_skipped",
                    "Shadow reads skipped: the transaction had written the table, or a read "
                    "could not be had whole.",
                    &routing::TableCounters::shadow_skipped}}) {
    out += StrCat("# HELP pgshift_table_", m.name, "_total ", m.help, "\n# TYPE pgshift_table_",
                  m.name, "_total counter\n");
    for (const auto& t : settings->config->tables) {
      const routing::TableCounters& n = server.table_counters().For(t.name);
      out += StrCat("pgshift_table_", m.name, "_total{table=\"", Label(t.name), "\"} ",
                    (n.*m.field).load(), "\n");
    }
  }

  out +=
      "# HELP pgshift_table_unexplained_changes Rows the authoritative server counts as "
      "changed in the table beyond pgshift's mirrored writes (the write audit).\n"
      "# TYPE pgshift_table_unexplained_changes gauge\n";
  for (const auto& t : settings->config->tables) {
    if (auto n = server.write_audit().Unexplained(t.name)) {
      out += StrCat("pgshift_table_unexplained_changes{table=\"", Label(t.name), "\"} ", *n, "\n");
    }
  }

  if (Coordinator* coordinator = server.coordinator()) {
    out +=
        "# HELP pgshift_instances The coordinated instances as of this one's last round "
        "(1 = its lease is live), with the flip each applied.\n"
        "# TYPE pgshift_instances gauge\n";
    for (const InstanceRow& i : coordinator->Instances()) {
      out += StrCat("pgshift_instances{instance=\"", Label(i.id), "\",address=\"", Label(i.address),
                    "\",generation=\"", Label(i.generation), "\"} ", i.live ? "1" : "0", "\n");
    }
    out +=
        "# HELP pgshift_fleet_table_evidence Every instance's shadow reads compared and "
        "persistently mismatched, and statements refused, since the table entered its phase.\n"
        "# TYPE pgshift_fleet_table_evidence gauge\n";
    for (const auto& [table, e] : coordinator->FleetTotals()) {
      for (auto [kind, n] :
           {std::pair{"shadow_compared", e.compared}, std::pair{"shadow_persistent", e.persistent},
            std::pair{"refused", e.refused}}) {
        out += StrCat("pgshift_fleet_table_evidence{table=\"", Label(table), "\",kind=\"", kind,
                      "\"} ", n, "\n");
      }
    }
    Metric(out, "pgshift_coordination_lease_valid", "gauge",
           "This instance's coordination lease is live (0: statements on tables in mirrored "
           "phases are refused).",
           server.coordination_gate()->LeaseValid() ? "1" : "0");
  }

  Stats::Latency l = s.latency();
  out += "# HELP pgshift_query_duration_seconds Query cycles through pgshift, from the client's "
         "Query/Sync/FunctionCall to the ReadyForQuery answering it.\n"
         "# TYPE pgshift_query_duration_seconds histogram\n";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < Stats::kLatencyBuckets.size(); ++i) {
    cumulative += l.buckets[i];
    out += StrCat("pgshift_query_duration_seconds_bucket{le=\"", Stats::kLatencyBuckets[i], "\"} ",
                  cumulative, "\n");
  }
  out += StrCat("pgshift_query_duration_seconds_bucket{le=\"+Inf\"} ", l.count, "\n");
  out += StrCat("pgshift_query_duration_seconds_sum ", l.sum_seconds, "\n");
  out += StrCat("pgshift_query_duration_seconds_count ", l.count, "\n");
  return out;
}

awaitable<void> ServeMetrics(Server& server, tcp::socket socket) {
  // A scraper that connects and says nothing must not hold the thread: the
  // connection gets five seconds. (A Deadline: its handler may run after
  // this frame and the socket are gone, and then does nothing.)
  std::optional<Deadline> deadline(std::in_place, socket, 5);
  std::string request;
  char buf[1024];
  error_code ec;
  while (request.find("\r\n\r\n") == std::string::npos && request.size() < 8192) {
    size_t n = co_await socket.async_read_some(asio::buffer(buf), WithError(ec));
    if (ec) break;
    request.append(buf, n);
  }
  std::string status, body, type = "text/plain; charset=utf-8";
  if (ec) co_return;
  // Read: the answer may take a while (/status.json reads the database).
  deadline.reset();
  auto is = [&](std::string_view path) {
    std::string get = StrCat("GET ", path);
    return request.starts_with(get + " ") || request.starts_with(get + "?");
  };
  if (is("/metrics")) {
    status = "200 OK";
    body = PrometheusText(server);
    type = "text/plain; version=0.0.4; charset=utf-8";
  } else if (is("/")) {
    status = "200 OK";
    body = StatusPageHtml();
    type = "text/html; charset=utf-8";
  } else if (is("/status.json")) {
    // It reads the database: off the thread that accepts clients.
    std::function<std::string()> work = [&server] { return StatusPageJson(server); };
    body = co_await server.RunInBackground(std::move(work));
    status = body.empty() ? "503 Service Unavailable" : "200 OK";
    type = "application/json";
  } else if (request.starts_with("GET ")) {
    status = "404 Not Found";
    body = "pgshift serves /metrics, / and /status.json\n";
  } else {
    status = "405 Method Not Allowed";
    body = "pgshift answers GET only\n";
  }
  std::string response = StrCat("HTTP/1.1 ", status, "\r\nContent-Type: ", type,
                                "\r\nContent-Length: ", body.size(),
                                "\r\nConnection: close\r\n\r\n", body);
  co_await asio::async_write(socket, asio::buffer(response), WithError(ec));
  socket.shutdown(tcp::socket::shutdown_both, ec);
  socket.close(ec);
}

}  // namespace pgshift::proxy
