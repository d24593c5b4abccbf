#include "tests/support/raw_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>

#include "protocol/md5_auth.h"
#include "protocol/messages/authentication.h"
#include "protocol/messages/error_response.h"
#include "protocol/messages/password.h"
#include "protocol/messages/startup.h"
#include "protocol/scram.h"
#include "protocol/wire.h"

namespace pgshift::testing {

RawClient::RawClient(int port, int timeout_ms) {
  fd_ = socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) Close();
}

RawClient::~RawClient() { Close(); }

void RawClient::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

bool RawClient::Send(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

bool RawClient::ReadExactly(char* out, size_t n) {
  while (n > 0) {
    ssize_t r = recv(fd_, out, n, 0);
    if (r <= 0) return false;
    out += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

std::optional<char> RawClient::ReadByte() {
  char c;
  if (!ReadExactly(&c, 1)) return std::nullopt;
  return c;
}

std::optional<RawClient::Message> RawClient::Read() {
  char header[5];
  if (!ReadExactly(header, 5)) return std::nullopt;
  int32_t length = protocol::ReadBigEndian32(header + 1);
  if (length < 4 || length > (1 << 30)) return std::nullopt;
  Message m{header[0], std::string(static_cast<size_t>(length - 4), '\0')};
  if (!ReadExactly(m.payload.data(), m.payload.size())) return std::nullopt;
  return m;
}

std::optional<protocol::ErrorFields> RawClient::ReadError() {
  while (auto m = Read()) {
    if (m->type == 'E') {
      auto e = protocol::ErrorResponse::Decode(m->payload);
      if (e.ok()) return static_cast<protocol::ErrorFields>(*e);
      return std::nullopt;
    }
  }
  return std::nullopt;
}

bool RawClient::WaitForClose() {
  char c;
  while (true) {
    ssize_t r = recv(fd_, &c, 1, 0);
    if (r == 0) return true;
    if (r < 0) return errno == ECONNRESET;
  }
}

std::optional<protocol::ErrorFields> RawClient::Login(
    const std::string& user, const std::string& password,
    std::vector<std::pair<std::string, std::string>> extra) {
  protocol::StartupMessage startup;
  startup.Set("user", user);
  startup.Set("database", "postgres");
  for (const auto& [k, v] : extra) startup.Set(k, v);
  std::string out;
  startup.Encode(out);
  Send(out);
  std::unique_ptr<protocol::ScramClient> scram;
  while (auto m = Read()) {
    if (m->type == 'E') {
      auto e = protocol::ErrorResponse::Decode(m->payload);
      return e.ok() ? static_cast<protocol::ErrorFields>(*e) : protocol::ErrorFields{};
    }
    if (m->type == 'Z') return std::nullopt;
    if (m->type != 'R') continue;
    auto auth = protocol::Authentication::Decode(m->payload);
    if (!auth.ok()) break;
    out.clear();
    using A = protocol::Authentication;
    switch (auth->code) {
      case A::kMd5Password:
        protocol::PasswordMessage{protocol::Md5SaltedResponse(
                                      protocol::Md5StoredPassword(password, user), auth->salt)}
            .Encode(out);
        break;
      case A::kSasl:
        scram = std::make_unique<protocol::ScramClient>(password);
        protocol::SaslInitialResponse{"SCRAM-SHA-256", scram->ClientFirstMessage()}.Encode(out);
        break;
      case A::kSaslContinue: {
        auto final_message = scram->HandleServerFirst(auth->data);
        if (!final_message.ok()) return protocol::ErrorFields{};
        protocol::SaslResponse{*final_message}.Encode(out);
        break;
      }
      default:
        break;
    }
    if (!out.empty()) Send(out);
  }
  return protocol::ErrorFields::Make("FATAL", "XXXXX", "connection closed during login");
}

}  // namespace pgshift::testing
