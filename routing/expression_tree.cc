#include "routing/expression_tree.h"

#include <cstdlib>
#include <vector>

#include "routing/parse_tree.h"

namespace pgshift::routing {

namespace {

using Node = PgQuery__Node;

Node* NewNode() {
  auto* node = static_cast<Node*>(std::malloc(sizeof(Node)));
  pg_query__node__init(node);
  return node;
}

// Every Node under `msg` (not `msg` itself), children after their parent
// is visited, so a visitor may replace a node's content in place.
void ForEachNode(ProtoMessage* msg, const std::function<void(Node*)>& visit) {
  ForEachChild(msg, [&](const char*, const ProtoMessage* child) {
    auto* mutable_child = const_cast<ProtoMessage*>(child);
    if (Is(child, pg_query__node__descriptor)) visit(reinterpret_cast<Node*>(mutable_child));
    ForEachNode(mutable_child, visit);
  });
}

}  // namespace

absl::StatusOr<Node*> ParseExpression(std::string_view expression) {
  absl::StatusOr<ParseTree> tree =
      ParseTree::Parse(std::string("SELECT ") + std::string(expression));
  if (!tree.ok()) return tree.status();
  PgQuery__ParseResult* result = tree->get();
  if (result->n_stmts != 1 || result->stmts[0]->stmt == nullptr ||
      result->stmts[0]->stmt->node_case != PG_QUERY__NODE__NODE_SELECT_STMT ||
      result->stmts[0]->stmt->select_stmt->n_target_list != 1 ||
      result->stmts[0]->stmt->select_stmt->target_list[0]->node_case !=
          PG_QUERY__NODE__NODE_RES_TARGET) {
    return absl::InvalidArgumentError("not one expression");
  }
  PgQuery__ResTarget* target = result->stmts[0]->stmt->select_stmt->target_list[0]->res_target;
  Node* expr = target->val;
  target->val = nullptr;  // now the caller's; the tree frees the rest
  return expr;
}

absl::StatusOr<Node*> ParseExpression(std::string_view expression, std::string_view refname) {
  absl::StatusOr<Node*> expr = ParseExpression(expression);
  if (expr.ok()) {
    ReplaceColumns(*expr, [&](std::string_view column) { return MakeColumnRef(refname, column); });
  }
  return expr;
}

Node* CopyNode(const Node* node) {
  std::vector<uint8_t> packed(pg_query__node__get_packed_size(node));
  pg_query__node__pack(node, packed.data());
  return pg_query__node__unpack(nullptr, packed.size(), packed.data());
}

void FreeNode(Node* node) { pg_query__node__free_unpacked(node, nullptr); }

void ReplaceColumns(Node* expr, const std::function<Node*(std::string_view column)>& replace) {
  auto at = [&](Node* node) {
    if (node->node_case != PG_QUERY__NODE__NODE_COLUMN_REF) return;
    const PgQuery__ColumnRef* ref = node->column_ref;
    if (ref->n_fields != 1 || ref->fields[0]->node_case != PG_QUERY__NODE__NODE_STRING) return;
    Node* value = replace(ref->fields[0]->string->sval);
    if (value == nullptr) return;
    // The node takes the value's content; the value's own shell goes.
    protobuf_c_message_free_unpacked(&node->column_ref->base, nullptr);
    *node = *value;
    std::free(value);
  };
  // All are found before any is replaced, so a replacement is never
  // visited; the expression itself may be a lone column.
  std::vector<Node*> columns;
  ForEachNode(&expr->base, [&](Node* n) {
    if (n->node_case == PG_QUERY__NODE__NODE_COLUMN_REF) columns.push_back(n);
  });
  for (Node* n : columns) at(n);
  at(expr);
}

Node* MakeColumnRef(std::string_view refname, std::string_view column) {
  auto* ref = static_cast<PgQuery__ColumnRef*>(std::malloc(sizeof(PgQuery__ColumnRef)));
  pg_query__column_ref__init(ref);
  ref->n_fields = 2;
  ref->fields = static_cast<Node**>(std::malloc(2 * sizeof(Node*)));
  ref->fields[0] = MakeStringNode(refname);
  if (column.empty()) {
    auto* star = static_cast<PgQuery__AStar*>(std::malloc(sizeof(PgQuery__AStar)));
    pg_query__a__star__init(star);
    Node* star_node = NewNode();
    star_node->node_case = PG_QUERY__NODE__NODE_A_STAR;
    star_node->a_star = star;
    ref->fields[1] = star_node;
  } else {
    ref->fields[1] = MakeStringNode(column);
  }
  ref->location = -1;
  Node* node = NewNode();
  node->node_case = PG_QUERY__NODE__NODE_COLUMN_REF;
  node->column_ref = ref;
  return node;
}

Node* MakeResTarget(Node* val, std::string_view name) {
  auto* target = static_cast<PgQuery__ResTarget*>(std::malloc(sizeof(PgQuery__ResTarget)));
  pg_query__res_target__init(target);
  target->val = val;
  target->location = -1;
  if (!name.empty()) SetString(&target->name, name);
  Node* node = NewNode();
  node->node_case = PG_QUERY__NODE__NODE_RES_TARGET;
  node->res_target = target;
  return node;
}

bool IsStar(const PgQuery__ResTarget* target) {
  if (target->val == nullptr || target->val->node_case != PG_QUERY__NODE__NODE_COLUMN_REF) {
    return false;
  }
  const PgQuery__ColumnRef* ref = target->val->column_ref;
  return ref->n_fields > 0 &&
         ref->fields[ref->n_fields - 1]->node_case == PG_QUERY__NODE__NODE_A_STAR;
}

bool IsPlainValue(const Node* node) {
  while (node != nullptr) {
    switch (node->node_case) {
      case PG_QUERY__NODE__NODE_A_CONST:
      case PG_QUERY__NODE__NODE_PARAM_REF:
      case PG_QUERY__NODE__NODE_COLUMN_REF: return true;
      case PG_QUERY__NODE__NODE_TYPE_CAST: node = node->type_cast->arg; break;
      default: return false;
    }
  }
  return false;
}

}  // namespace pgshift::routing
