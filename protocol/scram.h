// SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it: the user name
// travels in the startup packet, so the SCRAM "n=" attribute is ignored, and
// channel binding is not offered.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace pgshift::protocol {

inline constexpr std::string_view kScramSha256 = "SCRAM-SHA-256";
inline constexpr int kDefaultScramIterations = 4096;
// The most pgshift computes as a client (PostgreSQL's default is 4096).
inline constexpr int kMaxScramIterations = 100000;

// What a server keeps instead of the password; PostgreSQL's text form is
// "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>" (base64).
struct ScramVerifier {
  int iterations = kDefaultScramIterations;
  std::string salt;        // raw bytes
  std::string stored_key;  // raw, 32 bytes
  std::string server_key;  // raw, 32 bytes

  static bool LooksLikeVerifier(std::string_view text);
  static absl::StatusOr<ScramVerifier> Parse(std::string_view text);
  // A new verifier for a plaintext password, with a random salt.
  static ScramVerifier FromPassword(std::string_view password,
                                    int iterations = kDefaultScramIterations);
  std::string ToString() const;
};

// pgshift authenticating itself to a PostgreSQL server.
class ScramClient {
 public:
  explicit ScramClient(std::string password);
  std::string ClientFirstMessage();
  // Returns the client-final message.
  absl::StatusOr<std::string> HandleServerFirst(std::string_view server_first);
  absl::Status VerifyServerFinal(std::string_view server_final);

 private:
  std::string password_;
  std::string client_nonce_;
  std::string client_first_bare_;
  std::string server_signature_;  // expected, raw
};

// A client authenticating to pgshift. A server built with Doomed() runs the
// exchange to the end and then fails, so that an unknown user name cannot be
// told from a wrong password: its salt is derived from the name and a
// secret of the process (the same on every attempt, as a real user's is),
// its iteration count the default, and it costs no more than a real one.
// (PostgreSQL's approach, with its mock authentication nonce.)
class ScramServer {
 public:
  explicit ScramServer(ScramVerifier verifier) : verifier_(std::move(verifier)) {}
  static ScramServer Doomed(std::string_view user);

  // Returns the server-first message.
  absl::StatusOr<std::string> HandleClientFirst(std::string_view client_first);
  // Returns the server-final message, or PermissionDenied for a wrong proof
  // and InvalidArgument for a malformed message.
  absl::StatusOr<std::string> HandleClientFinal(std::string_view client_final);

 private:
  ScramVerifier verifier_;
  bool doomed_ = false;
  std::string gs2_header_;
  std::string nonce_;  // client + server nonce
  std::string client_first_bare_;
  std::string server_first_;
};

}  // namespace pgshift::protocol
