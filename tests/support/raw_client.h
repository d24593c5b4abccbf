// A protocol-level client on a plain blocking socket, for sending what libpq
// never would: bad lengths, unknown message types, half a message.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocol/error_fields.h"

namespace pgshift::testing {

class RawClient {
 public:
  // Connects to 127.0.0.1:port; every read gives up after `timeout_ms`.
  explicit RawClient(int port, int timeout_ms = 10000);
  ~RawClient();

  bool connected() const { return fd_ >= 0; }
  bool Send(std::string_view bytes);
  // Sends a StartupMessage and answers the authentication request (trust,
  // md5 or SCRAM with `password`). Returns nullopt once ReadyForQuery
  // arrives, or the ErrorResponse that ended the login.
  std::optional<protocol::ErrorFields> Login(const std::string& user,
                                             const std::string& password = "",
                                             std::vector<std::pair<std::string, std::string>>
                                                 extra = {});

  struct Message {
    char type;
    std::string payload;
  };
  // Next message from the server; nullopt on end of stream or timeout.
  std::optional<Message> Read();
  std::optional<char> ReadByte();
  // Reads until an ErrorResponse; nullopt when the stream ends first.
  std::optional<protocol::ErrorFields> ReadError();
  // True when the server closes the connection within the timeout.
  bool WaitForClose();
  void Close();

 private:
  bool ReadExactly(char* out, size_t n);
  int fd_ = -1;
};

}  // namespace pgshift::testing
