#include "proxy/cancel_registry.h"

namespace pgshift::proxy {

void CancelRegistry::Add(Key key, CancelTarget target) {
  absl::MutexLock lock(&mutex_);
  targets_[key].push_back(std::move(target));
}

void CancelRegistry::Remove(Key key) {
  absl::MutexLock lock(&mutex_);
  targets_.erase(key);
}

std::vector<CancelTarget> CancelRegistry::Find(Key key) const {
  absl::MutexLock lock(&mutex_);
  auto it = targets_.find(key);
  if (it == targets_.end()) return {};
  return it->second;
}

}  // namespace pgshift::proxy
