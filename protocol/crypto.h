// The two primitives every authentication path needs, checked.
#pragma once

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace pgshift::protocol {

// Cryptographically random bytes. Without them no salt, nonce or cancel
// key is safe to hand out, so a failure of OpenSSL's generator ends the
// process, saying why, rather than going on with predictable bytes.
inline void FillRandom(void* out, size_t n) {
  if (RAND_bytes(static_cast<unsigned char*>(out), static_cast<int>(n)) != 1) {
    std::fputs("pgshift: OpenSSL's random generator failed (RAND_bytes); stopping\n", stderr);
    std::abort();
  }
}

// Equality in time that depends only on the lengths, for secrets.
inline bool ConstantTimeEqual(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace pgshift::protocol
