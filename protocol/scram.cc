#include "protocol/scram.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <vector>

#include "absl/strings/escaping.h"
#include "common/strings.h"
#include "protocol/crypto.h"

namespace pgshift::protocol {

namespace {

constexpr size_t kKeyLength = 32;  // SHA-256
constexpr size_t kNonceBytes = 18;

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  FillRandom(out.data(), n);
  return out;
}

std::string Hmac(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string Sha256(std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out, &len, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string SaltedPassword(std::string_view password, std::string_view salt, int iterations) {
  std::string out(kKeyLength, '\0');
  PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                    reinterpret_cast<const unsigned char*>(salt.data()),
                    static_cast<int>(salt.size()), iterations, EVP_sha256(), kKeyLength,
                    reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

std::string Xor(std::string_view a, std::string_view b) {
  std::string out(a);
  for (size_t i = 0; i < out.size() && i < b.size(); ++i) out[i] = static_cast<char>(a[i] ^ b[i]);
  return out;
}

// Splits "a=x,b=y" into attribute values, checking the attribute letters in order.
absl::StatusOr<std::vector<std::string_view>> Attributes(std::string_view message,
                                                         std::string_view expected) {
  std::vector<std::string_view> parts = Split(message, ',');
  if (parts.size() < expected.size()) {
    return absl::InvalidArgumentError(StrCat("malformed SCRAM message: ", message));
  }
  std::vector<std::string_view> values;
  for (size_t i = 0; i < expected.size(); ++i) {
    if (parts[i].size() < 2 || parts[i][0] != expected[i] || parts[i][1] != '=') {
      return absl::InvalidArgumentError(StrCat(
          "malformed SCRAM message: expected attribute '", std::string(1, expected[i]), "'"));
    }
    values.push_back(parts[i].substr(2));
  }
  return values;
}

std::string B64(std::string_view raw) { return absl::Base64Escape(ToAbsl(raw)); }

bool Unbase64(std::string_view text, std::string* out) {
  return absl::Base64Unescape(ToAbsl(text), out);
}

}  // namespace

bool ScramVerifier::LooksLikeVerifier(std::string_view text) {
  return text.starts_with("SCRAM-SHA-256$");
}

absl::StatusOr<ScramVerifier> ScramVerifier::Parse(std::string_view text) {
  // SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
  std::vector<std::string_view> parts = Split(text, '$');
  auto bad = absl::InvalidArgumentError("not a SCRAM-SHA-256 verifier");
  if (parts.size() != 3 || parts[0] != "SCRAM-SHA-256") return bad;
  std::vector<std::string_view> iter_salt = Split(parts[1], ':');
  std::vector<std::string_view> keys = Split(parts[2], ':');
  if (iter_salt.size() != 2 || keys.size() != 2) return bad;
  ScramVerifier v;
  if (!ParseInt(iter_salt[0], v.iterations) || v.iterations <= 0 ||
      !Unbase64(iter_salt[1], &v.salt) ||
      !Unbase64(keys[0], &v.stored_key) ||
      !Unbase64(keys[1], &v.server_key) || v.stored_key.size() != kKeyLength ||
      v.server_key.size() != kKeyLength) {
    return bad;
  }
  return v;
}

ScramVerifier ScramVerifier::FromPassword(std::string_view password, int iterations) {
  ScramVerifier v;
  v.iterations = iterations;
  v.salt = RandomBytes(16);
  std::string salted = SaltedPassword(password, v.salt, iterations);
  v.stored_key = Sha256(Hmac(salted, "Client Key"));
  v.server_key = Hmac(salted, "Server Key");
  return v;
}

std::string ScramVerifier::ToString() const {
  return StrCat("SCRAM-SHA-256$", iterations, ":", B64(salt), "$", B64(stored_key), ":",
                      B64(server_key));
}

ScramClient::ScramClient(std::string password) : password_(std::move(password)) {}

std::string ScramClient::ClientFirstMessage() {
  client_nonce_ = B64(RandomBytes(kNonceBytes));
  client_first_bare_ = "n=,r=" + client_nonce_;
  return "n,," + client_first_bare_;
}

absl::StatusOr<std::string> ScramClient::HandleServerFirst(std::string_view server_first) {
  auto attrs = Attributes(server_first, "rsi");
  if (!attrs.ok()) return attrs.status();
  std::string_view nonce = (*attrs)[0];
  std::string salt;
  int iterations = 0;
  if (!nonce.starts_with(client_nonce_) || nonce.size() == client_nonce_.size()) {
    return absl::InvalidArgumentError("SCRAM server nonce does not extend the client nonce");
  }
  if (!Unbase64((*attrs)[1], &salt) || !ParseInt((*attrs)[2], iterations) ||
      iterations <= 0) {
    return absl::InvalidArgumentError("malformed SCRAM salt or iteration count");
  }
  // Each iteration costs pgshift a hash: a server (or whoever answers in
  // its place) asking for millions would stall the login's thread.
  if (iterations > kMaxScramIterations) {
    return absl::InvalidArgumentError(StrCat("the server asks for ", iterations,
                                             " SCRAM iterations, above pgshift's limit of ",
                                             kMaxScramIterations));
  }
  std::string salted = SaltedPassword(password_, salt, iterations);
  std::string client_key = Hmac(salted, "Client Key");
  std::string stored_key = Sha256(client_key);
  std::string final_without_proof = StrCat("c=biws,r=", nonce);
  std::string auth_message =
      StrCat(client_first_bare_, ",", server_first, ",", final_without_proof);
  std::string proof = Xor(client_key, Hmac(stored_key, auth_message));
  server_signature_ = Hmac(Hmac(salted, "Server Key"), auth_message);
  return StrCat(final_without_proof, ",p=", B64(proof));
}

absl::Status ScramClient::VerifyServerFinal(std::string_view server_final) {
  if (server_final.starts_with("e=")) {
    return absl::PermissionDeniedError(
        StrCat("SCRAM error from server: ", server_final.substr(2)));
  }
  auto attrs = Attributes(server_final, "v");
  if (!attrs.ok()) return attrs.status();
  std::string signature;
  if (!Unbase64((*attrs)[0], &signature) ||
      !ConstantTimeEqual(signature, server_signature_)) {
    return absl::PermissionDeniedError("SCRAM server signature is invalid");
  }
  return absl::OkStatus();
}

ScramServer ScramServer::Doomed(std::string_view user) {
  // A secret of this process's, so that a name's mock salt is stable here
  // yet cannot be computed elsewhere.
  static const std::string secret = RandomBytes(kKeyLength);
  ScramVerifier v;
  v.iterations = kDefaultScramIterations;
  v.salt = Hmac(secret, user).substr(0, 16);
  // Keys nothing can match (no password is derived: no more work than for
  // a real user's stored verifier).
  v.stored_key = RandomBytes(kKeyLength);
  v.server_key = RandomBytes(kKeyLength);
  ScramServer s(std::move(v));
  s.doomed_ = true;
  return s;
}

absl::StatusOr<std::string> ScramServer::HandleClientFirst(std::string_view client_first) {
  // gs2-header: "n,," (no channel binding) or "y,," (client could, thinks we can't).
  if (client_first.starts_with("p=")) {
    return absl::InvalidArgumentError(
        "channel binding was requested, but SCRAM-SHA-256-PLUS was not offered");
  }
  if (!client_first.starts_with("n,,") && !client_first.starts_with("y,,")) {
    return absl::InvalidArgumentError("malformed SCRAM client-first message");
  }
  gs2_header_ = std::string(client_first.substr(0, 3));
  client_first_bare_ = std::string(client_first.substr(3));
  auto attrs = Attributes(client_first_bare_, "nr");
  if (!attrs.ok()) return attrs.status();
  std::string_view client_nonce = (*attrs)[1];
  if (client_nonce.empty()) return absl::InvalidArgumentError("empty SCRAM client nonce");
  nonce_ = StrCat(client_nonce, B64(RandomBytes(kNonceBytes)));
  server_first_ =
      StrCat("r=", nonce_, ",s=", B64(verifier_.salt), ",i=", verifier_.iterations);
  return server_first_;
}

absl::StatusOr<std::string> ScramServer::HandleClientFinal(std::string_view client_final) {
  auto attrs = Attributes(client_final, "cr");
  if (!attrs.ok()) return attrs.status();
  size_t proof_at = client_final.rfind(",p=");
  if (proof_at == std::string_view::npos) {
    return absl::InvalidArgumentError("SCRAM client-final message has no proof");
  }
  if ((*attrs)[0] != B64(gs2_header_)) {
    return absl::InvalidArgumentError("SCRAM channel binding data does not match");
  }
  if ((*attrs)[1] != nonce_) return absl::InvalidArgumentError("SCRAM nonce does not match");
  std::string proof;
  if (!Unbase64(client_final.substr(proof_at + 3), &proof) ||
      proof.size() != kKeyLength) {
    return absl::InvalidArgumentError("malformed SCRAM proof");
  }
  std::string auth_message = StrCat(client_first_bare_, ",", server_first_, ",",
                                          client_final.substr(0, proof_at));
  std::string client_key = Xor(proof, Hmac(verifier_.stored_key, auth_message));
  if (doomed_ || !ConstantTimeEqual(Sha256(client_key), verifier_.stored_key)) {
    return absl::PermissionDeniedError("SCRAM proof is invalid");
  }
  return StrCat("v=", B64(Hmac(verifier_.server_key, auth_message)));
}

}  // namespace pgshift::protocol
