#include "proxy/rate_history.h"

#include <map>

#include "common/json.h"
#include "common/strings.h"

namespace pgshift::proxy {

void RateHistory::Record(const std::string& table, const Sample& sample) {
  absl::MutexLock lock(&mutex_);
  std::deque<Sample>& kept = samples_[table];
  kept.push_back(sample);
  while (kept.size() > kSamples) kept.pop_front();
}

namespace {

// Persistent mismatches per comparison between two samples (0 without any).
double MismatchRate(const RateHistory::Sample& a, const RateHistory::Sample& b) {
  if (b.shadow_compared <= a.shadow_compared || b.shadow_persistent < a.shadow_persistent) return 0;
  return static_cast<double>(b.shadow_persistent - a.shadow_persistent) /
         static_cast<double>(b.shadow_compared - a.shadow_compared);
}

}  // namespace

std::string RateHistory::Json() const {
  absl::MutexLock lock(&mutex_);
  std::map<std::string, const std::deque<Sample>*> ordered;  // tables by name
  for (const auto& [table, kept] : samples_) ordered[table] = &kept;
  std::string out = StrCat("{\"interval_s\":", kIntervalSeconds, ",\"tables\":{");
  bool first_table = true;
  for (const auto& [table, kept] : ordered) {
    out += StrCat(first_table ? "" : ",", JsonString(table), ":[");
    first_table = false;
    for (size_t i = 1; i < kept->size(); ++i) {
      const Sample& a = (*kept)[i - 1];
      const Sample& b = (*kept)[i];
      const double seconds = b.at > a.at ? static_cast<double>(b.at - a.at) : 1;
      // A counter never goes back; were it reset, the rate reads 0.
      auto rate = [&](uint64_t before, uint64_t after) {
        return after >= before ? static_cast<double>(after - before) / seconds : 0.0;
      };
      out += StrCat(i > 1 ? "," : "", "{\"at\":", b.at, ",\"writes\":", rate(a.writes, b.writes),
                    ",\"mirror_failures\":", rate(a.mirror_failures, b.mirror_failures),
                    ",\"shadow_compared\":", rate(a.shadow_compared, b.shadow_compared),
                    ",\"shadow_persistent\":", rate(a.shadow_persistent, b.shadow_persistent),
                    ",\"shadow_dropped\":", rate(a.shadow_dropped, b.shadow_dropped),
                    ",\"mismatch_rate\":", MismatchRate(a, b), "}");
    }
    out += "]";
  }
  return out + "}}";
}

}  // namespace pgshift::proxy
