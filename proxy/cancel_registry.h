// Maps the cancel key a client was given (the real BackendKeyData of its old
// backend) to every backend connection its session uses, so one
// CancelRequest reaches all of them.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "routing/config.h"

namespace pgshift::proxy {

struct CancelTarget {
  routing::Endpoint endpoint;
  int32_t process_id = 0;
  int32_t secret_key = 0;
};

class CancelRegistry {
 public:
  struct Key {
    int32_t process_id;
    int32_t secret_key;
    bool operator==(const Key&) const = default;
    template <typename H>
    friend H AbslHashValue(H h, const Key& k) {
      return H::combine(std::move(h), k.process_id, k.secret_key);
    }
  };

  void Add(Key key, CancelTarget target);
  void Remove(Key key);
  // Empty when the key is unknown (a CancelRequest for it is ignored).
  std::vector<CancelTarget> Find(Key key) const;

 private:
  mutable absl::Mutex mutex_;
  absl::flat_hash_map<Key, std::vector<CancelTarget>> targets_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace pgshift::proxy
