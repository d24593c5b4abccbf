#include "proxy/backend_login.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <atomic>
#include <chrono>
#include <functional>

#include "common/strings.h"
#include "protocol/md5_auth.h"
#include "protocol/message_type.h"
#include "protocol/messages/authentication.h"
#include "protocol/messages/error_response.h"
#include "protocol/messages/password.h"
#include "protocol/scram.h"
#include "proxy/deadline.h"
#include "proxy/log.h"
#include "proxy/message_io.h"

namespace pgshift::proxy {

namespace {

using protocol::ErrorFields;
namespace sqlstate = protocol::sqlstate;

class Login {
 public:
  explicit Login(const BackendLoginParams& p) : p_(p) {}

  awaitable<BackendLoginResult> Run() {
    auto executor = co_await asio::this_coro::executor;
    const routing::Endpoint& ep = p_.backend.endpoint;
    tcp::resolver resolver(executor);
    error_code ec;
    auto endpoints = co_await resolver.async_resolve(ep.host, std::to_string(ep.port), WithError(ec));
    if (ec) co_return Failure(StrCat("could not resolve \"", ep.host, "\": ", ec.message()));

    tcp::socket socket(executor);
    Deadline deadline(socket, p_.connect_timeout_s);
    co_await asio::async_connect(socket, endpoints, WithError(ec));
    if (ec) co_return Failure(deadline.expired() ? "timeout expired" : ec.message());
    stream_ = std::make_unique<Stream>(std::move(socket));
    deadline.Watch(*stream_);

    if (p_.backend.sslmode != routing::SslMode::kDisable) {
      if (auto error = co_await NegotiateTls(); error) co_return *error;
    }

    std::string user(p_.backend.user.value_or(std::string(p_.client_startup.Get("user"))));
    protocol::StartupMessage startup = p_.client_startup;
    startup.Set("user", user);
    if (p_.backend.dbname) startup.Set("database", *p_.backend.dbname);
    out_.clear();
    startup.Encode(out_);
    co_await stream_->Write(asio::buffer(out_), ec);
    if (ec) co_return Failure(ec.message());

    password_ = std::string(p_.backend.password ? std::string_view(*p_.backend.password)
                                                : p_.fallback_password);
    BackendLogin login;
    bool authenticated = false;
    while (true) {
      auto message = co_await ReadWholeMessage(*stream_, buffer_, protocol::kBackendTypes, ec);
      if (ec) co_return Failure(deadline.expired() ? "timeout expired" : ec.message());
      if (!message.ok()) co_return Failure(std::string(MessageOf(message.status())));
      char type = (*message)[0];
      std::string_view payload = std::string_view(*message).substr(protocol::kHeaderSize);
      if (type == protocol::backend::kErrorResponse) {
        auto error = protocol::ErrorResponse::Decode(payload);
        if (!error.ok()) co_return Failure("malformed ErrorResponse");
        co_return static_cast<ErrorFields>(*error);
      }
      if (!authenticated) {
        // pgshift asks for 3.0 without options, which every server speaks;
        // one that still answers which it speaks has said nothing that
        // changes the login.
        if (type == protocol::backend::kNegotiateProtocolVersion) continue;
        if (type != protocol::backend::kAuthentication) {
          co_return Failure(
              StrCat("unexpected message '", std::string(1, type), "' during authentication"));
        }
        auto auth = protocol::Authentication::Decode(payload);
        if (!auth.ok()) co_return Failure("malformed authentication request");
        if (auth->code == protocol::Authentication::kOk) {
          // Once SCRAM began, only a server that proved it knows the
          // password (its signature in SASLFinal) may say the login is done.
          if (scram_ && !scram_verified_) {
            co_return Failure("the server ended SCRAM without proving it knows the password");
          }
          authenticated = true;
          continue;
        }
        if (auto error = co_await Answer(*auth, user); error) co_return *error;
        continue;
      }
      login.greeting.append(*message);
      if (type == protocol::backend::kBackendKeyData) {
        auto key = protocol::BackendKeyData::Decode(payload);
        if (!key.ok()) co_return Failure("malformed BackendKeyData");
        login.key = *key;
      }
      if (type == protocol::backend::kReadyForQuery) break;
    }
    if (!buffer_.empty()) co_return Failure("unexpected data after ReadyForQuery");
    login.stream = std::move(stream_);
    co_return login;
  }

 private:
  ErrorFields Failure(std::string_view why) const {
    const routing::Endpoint& ep = p_.backend.endpoint;
    std::string message = StrCat("pgshift: could not connect to backend ", p_.backend_name, " (",
                                 ep.host, ":", ep.port, "): ", why);
    LogEvent(LogLevel::kWarning, "backend_login_failed",
             {{"backend", p_.backend_name}, {"address", StrCat(ep.host, ":", ep.port)}, {"reason", why}});
    return ErrorFields::Make("FATAL", sqlstate::kConnectionFailure, message);
  }

  awaitable<std::optional<ErrorFields>> NegotiateTls() {
    out_.clear();
    protocol::SslRequest{}.Encode(out_);
    error_code ec;
    co_await stream_->Write(asio::buffer(out_), ec);
    char answer = 0;
    if (!ec) co_await stream_->ReadExactly(asio::buffer(&answer, 1), ec);
    if (ec) co_return Failure(ec.message());
    const routing::SslMode mode = p_.backend.sslmode;
    if (answer == protocol::kEncryptionAccepted) {
      std::function<void(SSL*)> verify;
      if (routing::VerifiesServer(mode)) {
        verify = [this](SSL* ssl) { RequireTrustedCertificate(ssl); };
      }
      co_await stream_->TlsHandshake(p_.tls_context, asio::ssl::stream_base::client, ec, verify);
      if (ec) {
        long result = SSL_get_verify_result(stream_->tls_handle());
        if (verify && result != X509_V_OK) {
          co_return Failure(StrCat("the server's certificate is not accepted (sslmode ",
                                   routing::SslModeName(mode), ", sslrootcert \"",
                                   p_.backend.sslrootcert, "\"): ",
                                   X509_verify_cert_error_string(result)));
        }
        co_return Failure(StrCat("TLS handshake failed: ", ec.message()));
      }
    } else if (answer == protocol::kEncryptionRefused) {
      if (mode != routing::SslMode::kPrefer) {
        co_return Failure(StrCat("server does not support SSL, but sslmode is ",
                                 routing::SslModeName(mode)));
      }
    } else {
      co_return Failure("invalid response to SSLRequest");
    }
    co_return std::nullopt;
  }

  // verify-ca and verify-full, as libpq checks them: the server's
  // certificate must chain to sslrootcert, and for verify-full name the
  // host pgshift connects to (as a DNS name or an IP address).
  void RequireTrustedCertificate(SSL* ssl) const {
    const routing::BackendConfig& b = p_.backend;
    X509_STORE* store = X509_STORE_new();
    if (b.sslrootcert == "system") {
      X509_STORE_set_default_paths(store);
    } else {
      X509_STORE_load_locations(store, b.sslrootcert.c_str(), nullptr);
    }
    SSL_set0_verify_cert_store(ssl, store);  // the SSL object owns it now
    SSL_set_verify(ssl, SSL_VERIFY_PEER, nullptr);
    if (b.sslmode != routing::SslMode::kVerifyFull) return;
    const std::string& host = b.endpoint.host;
    error_code not_an_address;
    asio::ip::make_address(host, not_an_address);
    if (!not_an_address) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str());
    } else {
      SSL_set1_host(ssl, host.c_str());
      SSL_set_tlsext_host_name(ssl, host.c_str());
    }
  }

  awaitable<void> Send(std::string_view bytes, error_code& ec) {
    co_await stream_->Write(asio::buffer(bytes.data(), bytes.size()), ec);
  }

  // A password in clear text goes only where sslmode verified who gets
  // it (verify-ca, verify-full); under prefer or require, where the
  // operator accepted an unverified server, with a warning logged once.
  std::optional<ErrorFields> CheckCleartextAllowed() const {
    const routing::SslMode mode = p_.backend.sslmode;
    if (routing::VerifiesServer(mode) && stream_->tls()) return std::nullopt;
    if (mode == routing::SslMode::kPrefer || mode == routing::SslMode::kRequire) {
      static std::atomic<bool> warned{false};
      if (!warned.exchange(true)) {
        LogEvent(LogLevel::kWarning, "cleartext_password",
                 {{"backend", p_.backend_name},
                  {"reason", StrCat("the server asks for the password in clear text and sslmode ",
                                    routing::SslModeName(mode),
                                    stream_->tls() ? " does not verify it" : " fell back to no TLS",
                                    "; set verify-full to send it only to a verified server")}});
      }
      return std::nullopt;
    }
    return Failure(
        StrCat("the server asks for the password in clear text over a connection "
               "without TLS (sslmode ",
               routing::SslModeName(mode),
               "); pgshift sends it only over TLS (verify-ca or verify-full, or "
               "prefer/require with a warning)"));
  }

  // Answers one authentication request of the server.
  awaitable<std::optional<ErrorFields>> Answer(const protocol::Authentication& auth,
                                               const std::string& user) {
    using A = protocol::Authentication;
    bool needs_password = auth.code == A::kCleartextPassword || auth.code == A::kMd5Password ||
                          auth.code == A::kSasl;
    if (needs_password && password_.empty()) {
      co_return Failure(StrCat("the server asks for a password and pgshift has none for user \"",
                               user, "\": set backends.", p_.backend_name, ".password"));
    }
    error_code ec;
    out_.clear();
    switch (auth.code) {
      case A::kCleartextPassword:
        if (auto refused = CheckCleartextAllowed(); refused) co_return *refused;
        protocol::PasswordMessage{password_}.Encode(out_);
        break;
      case A::kMd5Password: {
        if (protocol::ScramVerifier::LooksLikeVerifier(password_)) {
          co_return Failure("the server asks for md5, and the password is a SCRAM verifier");
        }
        std::string stored = protocol::Md5StoredPassword(password_, user);
        protocol::PasswordMessage{protocol::Md5SaltedResponse(stored, auth.salt)}.Encode(out_);
        break;
      }
      case A::kSasl: {
        bool offered = false;
        for (const auto& m : auth.mechanisms) offered = offered || m == protocol::kScramSha256;
        if (!offered) co_return Failure("the server offers no SASL mechanism pgshift supports");
        scram_ = std::make_unique<protocol::ScramClient>(password_);
        protocol::SaslInitialResponse{std::string(protocol::kScramSha256),
                                      scram_->ClientFirstMessage()}
            .Encode(out_);
        break;
      }
      case A::kSaslContinue: {
        if (!scram_) co_return Failure("unexpected SASLContinue");
        auto final_message = scram_->HandleServerFirst(auth.data);
        if (!final_message.ok()) co_return Failure(std::string(MessageOf(final_message.status())));
        protocol::SaslResponse{*final_message}.Encode(out_);
        break;
      }
      case A::kSaslFinal: {
        if (!scram_) co_return Failure("unexpected SASLFinal");
        if (auto s = scram_->VerifyServerFinal(auth.data); !s.ok()) {
          co_return Failure(std::string(MessageOf(s)));
        }
        scram_verified_ = true;
        co_return std::nullopt;  // nothing to send; AuthenticationOk follows
      }
      default:
        co_return Failure(StrCat("the server asks for an authentication method pgshift does not "
                                 "support (code ", auth.code, ")"));
    }
    co_await Send(out_, ec);
    if (ec) co_return Failure(ec.message());
    co_return std::nullopt;
  }

  const BackendLoginParams& p_;
  std::unique_ptr<Stream> stream_;
  bool scram_verified_ = false;  // the server's SCRAM signature checked
  PacketBuffer buffer_{4096};
  std::string out_;
  std::string password_;
  std::unique_ptr<protocol::ScramClient> scram_;
};

}  // namespace

awaitable<BackendLoginResult> LoginToBackend(const BackendLoginParams& params) {
  Login login(params);
  co_return co_await login.Run();
}

}  // namespace pgshift::proxy
