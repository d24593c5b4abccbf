// Prometheus metrics over HTTP on proxy.metrics_listen: GET /metrics.
#pragma once

#include <string>

#include "proxy/asio.h"

namespace pgshift::proxy {

class Server;

// The metrics in Prometheus' text exposition format (version 0.0.4).
std::string PrometheusText(Server& server);

// Answers one HTTP request on `socket`, then closes it.
awaitable<void> ServeMetrics(Server& server, tcp::socket socket);

}  // namespace pgshift::proxy
