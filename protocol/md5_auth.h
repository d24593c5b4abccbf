// MD5 password authentication as PostgreSQL does it.
#pragma once

#include <string>
#include <string_view>

namespace pgshift::protocol {

// The stored form: "md5" + hex(md5(password + user)). A password already in
// that form is returned as is.
std::string Md5StoredPassword(std::string_view password, std::string_view user);

// What the client sends for a salt: "md5" + hex(md5(hex-part-of-stored + salt)).
std::string Md5SaltedResponse(std::string_view stored_password, std::string_view salt);

bool IsMd5StoredPassword(std::string_view password);

}  // namespace pgshift::protocol
