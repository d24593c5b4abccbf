// The admin console on proxy.admin_listen, spoken in the PostgreSQL protocol
// so that psql works: psql -h HOST -p ADMIN_PORT -U ADMIN_USER pgshift.
// Only [[users]] with admin = true may use it.
#pragma once

#include <string>
#include <string_view>

#include "proxy/asio.h"
#include "proxy/packet_buffer.h"
#include "proxy/stream.h"

namespace pgshift::proxy {

class Server;

class AdminConsole {
 public:
  AdminConsole(Server& server, tcp::socket socket);
  awaitable<void> Run();
  // Ends the connection (shutdown); Run() then returns.
  void Close() { client_.Close(); }

 private:
  // The reply to one command: rows or an error, then ReadyForQuery.
  std::string Execute(std::string_view sql);

  Server& server_;
  Stream client_;
  PacketBuffer buffer_{4096};
  std::string address_;
};

}  // namespace pgshift::proxy
