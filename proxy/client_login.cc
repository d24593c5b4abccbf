#include "proxy/client_login.h"

#include "common/strings.h"
#include "protocol/crypto.h"
#include "protocol/md5_auth.h"
#include "protocol/message_type.h"
#include "protocol/messages/authentication.h"
#include "protocol/messages/error_response.h"
#include "protocol/messages/negotiate_protocol_version.h"
#include "protocol/messages/password.h"
#include "protocol/scram.h"
#include "proxy/log.h"
#include "proxy/message_io.h"

namespace pgshift::proxy {

namespace {

namespace sqlstate = protocol::sqlstate;

// What a client may send while authenticating: the 'p' family.
const protocol::TypeSet kAuthResponseTypes("p");

}  // namespace

protocol::ErrorFields Fatal(std::string_view code, std::string_view message) {
  return protocol::ErrorFields::Make("FATAL", code, message);
}

awaitable<std::optional<ClientStart>> ClientLogin::ReadStartup(asio::ssl::context* tls) {
  // Each kind of encryption request once; after one is refused the other
  // may follow (libpq asks for GSS first, then TLS), after one is accepted
  // neither (as PostgreSQL's ProcessStartupPacket).
  bool ssl_done = false;
  bool gss_done = false;
  while (true) {
    error_code ec;
    auto packet = co_await ReadStartupPacket(stream_, buffer_, ec);
    if (ec) co_return std::nullopt;  // gone before saying anything useful
    if (!packet.ok()) {
      // Not a PostgreSQL client (or one hanging up at once: a Terminate
      // reads as a huge length). The postmaster logs this and closes
      // without an answer; so does pgshift.
      LogEvent(LogLevel::kWarning, "invalid_startup_packet",
               {{"client", address_}, {"reason", MessageOf(packet.status())}});
      co_return std::nullopt;
    }
    auto parsed = protocol::ParseStartupPacket(*packet);
    if (!parsed.ok()) {
      bool version = parsed.status().code() == absl::StatusCode::kFailedPrecondition;
      std::string_view code = version ? sqlstate::kFeatureNotSupported : sqlstate::kProtocolViolation;
      co_await Fail(Fatal(code, MessageOf(parsed.status())));
      co_return std::nullopt;
    }
    if (auto* start = std::get_if<protocol::StartupMessage>(&*parsed)) {
      if (!co_await NegotiateVersion(*start)) co_return std::nullopt;
      co_return *start;
    }
    if (auto* cancel = std::get_if<protocol::CancelRequest>(&*parsed)) co_return *cancel;
    const bool ssl = std::holds_alternative<protocol::SslRequest>(*parsed);
    if (ssl ? ssl_done : gss_done) {
      co_await Fail(Fatal(sqlstate::kProtocolViolation, "duplicate encryption request"));
      co_return std::nullopt;
    }
    (ssl ? ssl_done : gss_done) = true;
    bool accept_tls = ssl && tls != nullptr;
    if (accept_tls) gss_done = true;
    char answer = accept_tls ? protocol::kEncryptionAccepted : protocol::kEncryptionRefused;
    co_await stream_.Write(asio::buffer(&answer, 1), ec);
    if (ec) co_return std::nullopt;
    if (accept_tls) {
      // Bytes sent before the handshake would be trusted as if encrypted.
      if (!buffer_.empty()) {
        co_await Fail(
            Fatal(sqlstate::kProtocolViolation, "received unencrypted data after SSL request"));
        co_return std::nullopt;
      }
      co_await stream_.TlsHandshake(*tls, asio::ssl::stream_base::server, ec);
      if (ec) {
        LogEvent(LogLevel::kWarning, "tls_handshake_failed",
                 {{"client", address_}, {"reason", ec.message()}});
        co_return std::nullopt;
      }
    }
  }
}

// A client asking for a newer 3.x (PostgreSQL 18's libpq asks for 3.2) or
// for protocol options ("_pq_.*") is told, as PostgreSQL tells it, that
// this server speaks 3.0 and knows none of them; it then carries on in 3.0,
// and so does pgshift toward its servers.
awaitable<bool> ClientLogin::NegotiateVersion(protocol::StartupMessage& start) {
  protocol::NegotiateProtocolVersion answer;
  auto& params = start.parameters;
  for (auto it = params.begin(); it != params.end();) {
    if (it->first.starts_with("_pq_.")) {
      answer.unrecognized_options.push_back(it->first);
      it = params.erase(it);
    } else {
      ++it;
    }
  }
  const bool newer = start.protocol_version != protocol::kProtocolVersion3;
  if (!newer && answer.unrecognized_options.empty()) co_return true;
  start.protocol_version = protocol::kProtocolVersion3;
  std::string out;
  answer.Encode(out);
  error_code ec;
  co_await stream_.Write(asio::buffer(out), ec);
  co_return !ec;
}

awaitable<bool> ClientLogin::Authenticate(const Settings& settings, const std::string& user,
                                          std::optional<routing::AuthMethod> method) {
  user_ = user;
  const routing::UserConfig* entry = settings.config->FindUser(user);
  switch (method.value_or(settings.config->proxy.auth_method)) {
    case routing::AuthMethod::kTrust:
      if (entry == nullptr && !settings.config->users.empty()) {
        co_await Fail(Fatal(sqlstate::kInvalidAuthorization,
                                  StrCat("pgshift: user \"", user, "\" is not in [[users]]")));
        co_return false;
      }
      co_return true;
    case routing::AuthMethod::kMd5:
      co_return co_await AuthenticateMd5(user, entry);
    case routing::AuthMethod::kScramSha256:
      co_return co_await AuthenticateScram(settings, user, entry);
  }
  co_return false;
}

awaitable<std::optional<std::string>> ClientLogin::ReadAuthResponse(std::string_view method) {
  error_code ec;
  auto message = co_await ReadWholeMessage(stream_, buffer_, kAuthResponseTypes, ec);
  // A client that hangs up here usually went to ask its user for a password.
  if (ec) co_return std::nullopt;
  if (!message.ok()) {
    co_await RejectLogin(sqlstate::kProtocolViolation, std::string(MessageOf(message.status())),
                         method, "bad message");
    co_return std::nullopt;
  }
  co_return message->substr(protocol::kHeaderSize);
}

awaitable<bool> ClientLogin::AuthenticateMd5(const std::string& user,
                                             const routing::UserConfig* entry) {
  auto request = protocol::Authentication::Md5Password(std::string(4, '\0'));
  protocol::FillRandom(request.salt.data(), 4);
  co_await Ask(request);
  auto payload = co_await ReadAuthResponse("md5");
  if (!payload) co_return false;
  auto password = protocol::PasswordMessage::Decode(*payload);
  bool ok = password.ok() && entry != nullptr && !entry->password.empty() &&
            protocol::ConstantTimeEqual(
                password->password,
                protocol::Md5SaltedResponse(protocol::Md5StoredPassword(entry->password, user),
                                            request.salt));
  if (!ok) {
    std::string text = StrCat("password authentication failed for user \"", user, "\"");
    std::string_view reason = entry ? "wrong password" : "no such user";
    co_await RejectLogin(sqlstate::kInvalidPassword, std::move(text), "md5", reason);
  }
  co_return ok;
}

awaitable<bool> ClientLogin::AuthenticateScram(const Settings& settings, const std::string& user,
                                               const routing::UserConfig* entry) {
  const protocol::ScramVerifier* verifier = entry ? settings.ScramVerifierFor(user) : nullptr;
  protocol::ScramServer scram =
      verifier ? protocol::ScramServer(*verifier) : protocol::ScramServer::Doomed(user);
  auto request = protocol::Authentication::Sasl({std::string(protocol::kScramSha256)});
  co_await Ask(request);

  auto payload = co_await ReadAuthResponse("scram-sha-256");
  if (!payload) co_return false;
  auto initial = protocol::SaslInitialResponse::Decode(*payload);
  if (!initial.ok() || initial->mechanism != protocol::kScramSha256 || !initial->data) {
    co_await RejectLogin(sqlstate::kProtocolViolation,
                         "client selected an invalid SASL authentication mechanism",
                         "scram-sha-256", "bad mechanism");
    co_return false;
  }
  auto server_first = scram.HandleClientFirst(*initial->data);
  if (!server_first.ok()) {
    co_await RejectLogin(sqlstate::kProtocolViolation,
                         std::string(MessageOf(server_first.status())), "scram-sha-256",
                         "bad message");
    co_return false;
  }
  auto cont = protocol::Authentication::SaslContinue(*server_first);
  co_await Ask(cont);

  payload = co_await ReadAuthResponse("scram-sha-256");
  if (!payload) co_return false;
  auto response = protocol::SaslResponse::Decode(*payload);
  if (!response.ok()) {
    co_await RejectLogin(sqlstate::kProtocolViolation, std::string(MessageOf(response.status())),
                         "scram-sha-256", "bad message");
    co_return false;
  }
  auto server_final = scram.HandleClientFinal(response->data);
  if (!server_final.ok()) {
    // Locals, not a conditional inside co_await: GCC 12 destroys such
    // temporaries twice.
    bool wrong = absl::IsPermissionDenied(server_final.status());
    std::string_view code = wrong ? sqlstate::kInvalidPassword : sqlstate::kProtocolViolation;
    std::string text = wrong ? StrCat("password authentication failed for user \"", user, "\"")
                             : std::string(MessageOf(server_final.status()));
    std::string_view reason = wrong ? (entry ? "wrong password" : "no such user") : "bad message";
    co_await RejectLogin(code, std::move(text), "scram-sha-256", reason);
    co_return false;
  }
  auto final_message = protocol::Authentication::SaslFinal(*server_final);
  co_await Ask(final_message);
  co_return writable_;
}

awaitable<void> ClientLogin::RejectLogin(std::string_view code, std::string message,
                                         std::string_view method, std::string_view reason) {
  stats_.login_failures.fetch_add(1, std::memory_order_relaxed);
  LogEvent(LogLevel::kWarning, "auth_failed",
           {{"client", address_}, {"user", user_}, {"method", method}, {"reason", reason}});
  co_await Fail(Fatal(code, message));
}

awaitable<void> ClientLogin::Ask(const protocol::Authentication& request) {
  std::string out;
  request.Encode(out);
  co_await Send(out);
}

awaitable<void> ClientLogin::Send(std::string_view bytes) {
  error_code ec;
  co_await stream_.Write(asio::buffer(bytes.data(), bytes.size()), ec);
  if (ec) writable_ = false;
}

awaitable<void> ClientLogin::Fail(protocol::ErrorFields error) {
  std::string out;
  protocol::ErrorResponse(std::move(error)).Encode(out);
  co_await Send(out);
  stream_.Close();
}

}  // namespace pgshift::proxy
