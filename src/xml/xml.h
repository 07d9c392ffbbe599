// Reading XML from outside (SOAP answers, later S3 listings) with libxml2, namespace-aware,
// and writing it safely. Elements are matched by local name and namespace URI, never by prefix:
// servers choose prefixes freely (vcsim writes xsi:type as "XMLSchema-instance:type").
//
// Parsing is bounded and safe for hostile input: no external entities, no DTD loading, no
// network, a size limit, and libxml2's depth limits.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

typedef struct _xmlDoc xmlDoc;
typedef struct _xmlNode xmlNode;

namespace vmbackup::xml {

inline constexpr const char* kXsiNs = "http://www.w3.org/2001/XMLSchema-instance";

// A view of one element; valid while its Document lives. A default-constructed Node is
// "absent": every lookup on it gives absent nodes and empty text.
class Node {
 public:
  Node() = default;
  explicit Node(xmlNode* n) : n_(n) {}
  explicit operator bool() const { return n_ != nullptr; }

  std::string name() const;  // local name
  std::string ns() const;    // namespace URI ("" for none)
  std::string text() const;  // concatenated text content
  // The first child element with this local name (any namespace), or absent.
  Node child(std::string_view local_name) const;
  // Every child element with this local name ("" = every child element).
  std::vector<Node> children(std::string_view local_name = "") const;
  // Follows a path of local names: "config/hardware/device".
  Node path(std::string_view slash_path) const;
  // The attribute with this local name and namespace URI ("" = no namespace).
  std::optional<std::string> attr(std::string_view local_name, std::string_view ns = "") const;
  // xsi:type's local part, the prefix resolved through the element's namespace declarations
  // ("" when there is none).
  std::string xsi_type() const;

  // Editing (for documents this program rewrites, e.g. a libvirt domain for a new VM). The
  // attribute and child helpers work on names without a namespace.
  void SetAttr(std::string_view local_name, std::string_view value);
  void RemoveAttr(std::string_view local_name);
  void SetText(std::string_view text);
  Node AddChild(std::string_view local_name);  // appended last
  void Remove();                               // unlinks and frees it; the Node becomes absent

 private:
  xmlNode* n_ = nullptr;
};

class Document {
 public:
  // kCorruption with libxml2's message (line, column) for anything that is not well-formed.
  static Result<Document> Parse(std::string_view text, std::string_view what);
  Document(Document&&) noexcept;
  Document& operator=(Document&&) noexcept;
  ~Document();
  Node root() const;
  std::string ToString() const;  // the document as XML text, without the XML declaration

 private:
  explicit Document(xmlDoc* d) : d_(d) {}
  xmlDoc* d_ = nullptr;
};

// Text escaped for element content and attribute values (&, <, >, ", ').
std::string Escape(std::string_view text);

}  // namespace vmbackup::xml
