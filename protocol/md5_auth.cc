#include "protocol/md5_auth.h"

#include <openssl/evp.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"

namespace pgshift::protocol {

namespace {

std::string Md5Hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_md5(), nullptr);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), len));
}

}  // namespace

bool IsMd5StoredPassword(std::string_view password) {
  if (password.size() != 35 || !password.starts_with("md5")) return false;
  for (char c : password.substr(3)) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

std::string Md5StoredPassword(std::string_view password, std::string_view user) {
  if (IsMd5StoredPassword(password)) return std::string(password);
  std::string input(password);
  input.append(user);
  return "md5" + Md5Hex(input);
}

std::string Md5SaltedResponse(std::string_view stored_password, std::string_view salt) {
  std::string input(stored_password.substr(3));
  input.append(salt);
  return "md5" + Md5Hex(input);
}

}  // namespace pgshift::protocol
