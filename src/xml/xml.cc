#include "xml/xml.h"

#include <libxml/parser.h>
#include <libxml/tree.h>

#include <cstring>

#include "base/lazy_library.h"
#include "base/strings.h"

VMBACKUP_DECLARE_LAZY_LIBRARY(xml2)

namespace vmbackup::xml {
namespace {

constexpr size_t kMaxDocument = size_t(64) << 20;

std::string Str(const xmlChar* s) { return s ? reinterpret_cast<const char*>(s) : ""; }

bool NameIs(const xmlNode* n, std::string_view local) {
  return n->type == XML_ELEMENT_NODE &&
         std::string_view(reinterpret_cast<const char*>(n->name)) == local;
}

// libxml2's xmlFree is a variable, which a library loaded on first use cannot lend: its value
// comes through xmlMemGet (a function).
void FreeXml(void* p) {
  xmlFreeFunc free_fn = nullptr;
  xmlMemGet(&free_fn, nullptr, nullptr, nullptr);
  free_fn(p);
}

// Silences libxml2's default printing to stderr; errors are read from the parser context.
void Quiet(void*, const char*, ...) {}

}  // namespace

std::string Node::name() const { return n_ ? Str(n_->name) : ""; }
std::string Node::ns() const { return n_ && n_->ns ? Str(n_->ns->href) : ""; }

std::string Node::text() const {
  if (!n_) return "";
  xmlChar* c = xmlNodeGetContent(n_);
  std::string s = Str(c);
  FreeXml(c);
  return s;
}

Node Node::child(std::string_view local_name) const {
  if (!n_) return Node();
  for (xmlNode* c = n_->children; c; c = c->next)
    if (NameIs(c, local_name)) return Node(c);
  return Node();
}

std::vector<Node> Node::children(std::string_view local_name) const {
  std::vector<Node> out;
  if (!n_) return out;
  for (xmlNode* c = n_->children; c; c = c->next) {
    if (c->type != XML_ELEMENT_NODE) continue;
    if (local_name.empty() || NameIs(c, local_name)) out.emplace_back(c);
  }
  return out;
}

Node Node::path(std::string_view slash_path) const {
  Node n = *this;
  while (n && !slash_path.empty()) {
    size_t slash = slash_path.find('/');
    n = n.child(slash_path.substr(0, slash));
    slash_path =
        slash == std::string_view::npos ? std::string_view() : slash_path.substr(slash + 1);
  }
  return n;
}

std::optional<std::string> Node::attr(std::string_view local_name, std::string_view ns) const {
  if (!n_) return std::nullopt;
  for (xmlAttr* a = n_->properties; a; a = a->next) {
    if (std::string_view(reinterpret_cast<const char*>(a->name)) != local_name) continue;
    const std::string a_ns = a->ns ? Str(a->ns->href) : "";
    if (a_ns != ns) continue;
    xmlChar* v = xmlNodeListGetString(n_->doc, a->children, 1);
    std::string s = Str(v);
    FreeXml(v);
    return s;
  }
  return std::nullopt;
}

std::string Node::xsi_type() const {
  auto t = attr("type", kXsiNs);
  if (!t) return "";
  size_t colon = t->find(':');
  return colon == std::string::npos ? *t : t->substr(colon + 1);
}

Result<Document> Document::Parse(std::string_view text, std::string_view what) {
  if (text.size() > kMaxDocument)
    return CorruptionError(StrFormat("%.*s: XML document of %zu bytes is too large",
                                     int(what.size()), what.data(), text.size()));
  VMBACKUP_RETURN_IF_ERROR(lazy::Load(lazy::xml2));
  xmlSetGenericErrorFunc(nullptr, Quiet);
  xmlParserCtxtPtr ctx = xmlNewParserCtxt();
  if (!ctx) return InternalError("xmlNewParserCtxt failed");
  // No entity expansion, no DTD, no network: outside input must not reach the file system.
  xmlDoc* d = xmlCtxtReadMemory(ctx, text.data(), int(text.size()), nullptr, nullptr,
                                XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
  std::string err;
  if (!d) {
    const xmlError* e = xmlCtxtGetLastError(ctx);
    err = e ? StrFormat("line %d, column %d: %s", e->line, e->int2, e->message ? e->message : "")
            : "not XML";
    while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
  }
  xmlFreeParserCtxt(ctx);
  if (!d) {
    return CorruptionError(
        StrFormat("%.*s: not well-formed XML (%s)", int(what.size()), what.data(), err.c_str()));
  }
  if (!xmlDocGetRootElement(d)) {
    xmlFreeDoc(d);
    return CorruptionError(
        StrFormat("%.*s: XML without an element", int(what.size()), what.data()));
  }
  return Document(d);
}

Document::Document(Document&& o) noexcept : d_(o.d_) { o.d_ = nullptr; }
Document& Document::operator=(Document&& o) noexcept {
  if (this != &o) {
    if (d_) xmlFreeDoc(d_);
    d_ = o.d_;
    o.d_ = nullptr;
  }
  return *this;
}
Document::~Document() {
  if (d_) xmlFreeDoc(d_);
}
void Node::SetAttr(std::string_view local_name, std::string_view value) {
  if (!n_) return;
  xmlSetProp(n_, reinterpret_cast<const xmlChar*>(std::string(local_name).c_str()),
             reinterpret_cast<const xmlChar*>(std::string(value).c_str()));
}

void Node::RemoveAttr(std::string_view local_name) {
  if (!n_) return;
  xmlUnsetProp(n_, reinterpret_cast<const xmlChar*>(std::string(local_name).c_str()));
}

void Node::SetText(std::string_view text) {
  if (!n_) return;
  // xmlNodeSetContent takes entity references; the encoded form keeps '&' literal.
  xmlChar* enc =
      xmlEncodeSpecialChars(n_->doc, reinterpret_cast<const xmlChar*>(std::string(text).c_str()));
  xmlNodeSetContent(n_, enc);
  FreeXml(enc);
}

Node Node::AddChild(std::string_view local_name) {
  if (!n_) return Node();
  return Node(xmlNewChild(
      n_, nullptr, reinterpret_cast<const xmlChar*>(std::string(local_name).c_str()), nullptr));
}

void Node::Remove() {
  if (!n_) return;
  xmlUnlinkNode(n_);
  xmlFreeNode(n_);
  n_ = nullptr;
}

std::string Document::ToString() const {
  if (!d_) return "";
  xmlNode* root = xmlDocGetRootElement(d_);
  if (!root) return "";
  xmlBuffer* buf = xmlBufferCreate();
  xmlNodeDump(buf, d_, root, 0, 0);
  std::string out(reinterpret_cast<const char*>(xmlBufferContent(buf)),
                  size_t(xmlBufferLength(buf)));
  xmlBufferFree(buf);
  return out;
}

Node Document::root() const { return Node(d_ ? xmlDocGetRootElement(d_) : nullptr); }

std::string Escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace vmbackup::xml
