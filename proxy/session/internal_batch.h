// The messages pgshift sends on a client's server connection for itself.
// They use a statement and a portal of pgshift's own names, so the client's
// unnamed statement and portal on that connection, which may outlive a
// Sync, are left alone.
#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

namespace pgshift::proxy {

// Appends the messages that run `sql` (with `param`) in pgshift's portal:
// as the statement `prepared` names, or else parsed afresh.
void AppendInternal(std::string& out, std::string_view sql,
                    std::optional<std::string> param = std::nullopt,
                    const std::string* prepared = nullptr);

// Messages that run `statements` (one statement each), ending in Sync.
std::string InternalBatch(std::initializer_list<std::string_view> statements);

}  // namespace pgshift::proxy
