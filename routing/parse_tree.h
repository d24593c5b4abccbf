// libpg_query's parse tree as protobuf-c structures: parsed from SQL,
// walked, edited in place and deparsed back to SQL. Analysis and rewriting
// both work on it, so SQL text is never edited as a string.
#pragma once

#include <pg_query/pg_query.pb-c.h>

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace pgshift::routing {

using ProtoMessage = ProtobufCMessage;

class ParseTree {
 public:
  // A syntax error comes back as InvalidArgument with PostgreSQL's message.
  static absl::StatusOr<ParseTree> Parse(std::string_view sql);

  PgQuery__ParseResult* get() const { return tree_.get(); }
  const std::string& sql() const { return sql_; }
  // The text of statement `i` as the client wrote it.
  std::string StatementText(size_t i) const;
  // SQL for the (possibly edited) tree, statements joined by "; ".
  absl::StatusOr<std::string> Deparse() const;
  // The same for statements [begin, end) only.
  absl::StatusOr<std::string> Deparse(size_t begin, size_t end) const;

 private:
  struct Deleter {
    void operator()(PgQuery__ParseResult* r) const;
  };
  std::string sql_;
  std::unique_ptr<PgQuery__ParseResult, Deleter> tree_;
};

// Calls fn(field_name, child) for each present message-typed field of `msg`,
// repeated fields item by item.
template <typename Fn>
void ForEachChild(const ProtoMessage* msg, Fn fn) {
  const ProtobufCMessageDescriptor* d = msg->descriptor;
  const char* base = reinterpret_cast<const char*>(msg);
  for (unsigned i = 0; i < d->n_fields; ++i) {
    const ProtobufCFieldDescriptor& f = d->fields[i];
    if (f.type != PROTOBUF_C_TYPE_MESSAGE) continue;
    if (f.flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
      // Members of a oneof share storage: only the active one is valid.
      if (*reinterpret_cast<const uint32_t*>(base + f.quantifier_offset) != f.id) continue;
    }
    if (f.label == PROTOBUF_C_LABEL_REPEATED) {
      size_t n = *reinterpret_cast<const size_t*>(base + f.quantifier_offset);
      auto items = *reinterpret_cast<ProtoMessage* const* const*>(base + f.offset);
      for (size_t k = 0; k < n; ++k) {
        if (items[k] != nullptr) fn(f.name, items[k]);
      }
    } else if (auto child = *reinterpret_cast<ProtoMessage* const*>(base + f.offset)) {
      fn(f.name, child);
    }
  }
}

inline bool Is(const ProtoMessage* msg, const ProtobufCMessageDescriptor& d) {
  return msg->descriptor == &d;
}

// "schema.name"; an unqualified name is in public, the default search_path.
std::string QualifiedName(const char* schema, const char* name);

// Replaces a protobuf-c string field, freeing the old value as
// free_unpacked would.
void SetString(char** field, std::string_view value);

// A String node (as in ColumnRef fields) holding `value`.
PgQuery__Node* MakeStringNode(std::string_view value);

}  // namespace pgshift::routing
