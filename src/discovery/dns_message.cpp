#include "discovery/dns_message.h"

#include <algorithm>
#include <map>
#include <stdexcept>

#include "common/text.h"

namespace clawbot::discovery::dns {

namespace {

constexpr std::size_t kMaxLabel = 63;
constexpr std::size_t kMaxName = 255;  // wire bytes, length octets and the final zero included
constexpr int kMaxPointerHops = 128;
constexpr std::uint16_t kTopBit = 0x8000;

using text::lower;

// ------------------------------------------------------------------------------------------------ encoding

class Writer {
 public:
  void u8(std::uint8_t v) { out_.push_back(v); }
  void u16(std::uint16_t v) {
    out_.push_back(static_cast<std::uint8_t>(v >> 8));
    out_.push_back(static_cast<std::uint8_t>(v & 0xff));
  }
  void u32(std::uint32_t v) {
    u16(static_cast<std::uint16_t>(v >> 16));
    u16(static_cast<std::uint16_t>(v & 0xffff));
  }
  void bytes(const void* data, std::size_t n) {
    const auto* p = static_cast<const std::uint8_t*>(data);
    out_.insert(out_.end(), p, p + n);
  }
  std::size_t size() const noexcept { return out_.size(); }
  void patch_u16(std::size_t at, std::uint16_t v) {
    out_[at] = static_cast<std::uint8_t>(v >> 8);
    out_[at + 1] = static_cast<std::uint8_t>(v & 0xff);
  }

  // Writes `name`, pointing at an earlier copy of its longest known suffix when `compress`.
  void name(std::string_view text, bool compress) {
    const std::vector<std::string> labels = split_name(text);
    std::size_t wire = 1;
    for (const auto& l : labels) wire += l.size() + 1;
    if (wire > kMaxName) throw std::invalid_argument("DNS name longer than 255 bytes: " + std::string(text));
    for (std::size_t i = 0; i < labels.size(); ++i) {
      std::string key;
      for (std::size_t j = i; j < labels.size(); ++j) key += lower(escape_label(labels[j])) + ".";
      if (compress) {
        if (const auto it = suffixes_.find(key); it != suffixes_.end()) {
          u16(static_cast<std::uint16_t>(0xC000 | it->second));
          return;
        }
      }
      if (out_.size() < 0x3FFF) suffixes_.emplace(key, static_cast<std::uint16_t>(out_.size()));
      u8(static_cast<std::uint8_t>(labels[i].size()));
      bytes(labels[i].data(), labels[i].size());
    }
    u8(0);
  }

  std::vector<std::uint8_t> take() { return std::move(out_); }

 private:
  std::vector<std::uint8_t> out_;
  std::map<std::string, std::uint16_t> suffixes_;  // lower-cased escaped suffix "a.b.local." -> offset
};

void write_record(Writer& w, const Record& r) {
  w.name(r.name, true);
  w.u16(r.type);
  w.u16(static_cast<std::uint16_t>((r.klass & 0x7fff) | (r.cache_flush ? kTopBit : 0)));
  w.u32(r.ttl);
  const std::size_t length_at = w.size();
  w.u16(0);
  const std::size_t start = w.size();
  switch (r.type) {
    case type_ptr:
      w.name(r.target, true);
      break;
    case type_srv:
      w.u16(r.priority);
      w.u16(r.weight);
      w.u16(r.port);
      w.name(r.target, false);  // RFC 2782: not compressed (mDNS readers accept both)
      break;
    case type_txt:
      if (r.txt.empty()) {
        w.u8(0);  // RFC 6763 §6.1: an empty TXT record is one empty string
      }
      for (const auto& s : r.txt) {
        if (s.size() > 255) throw std::invalid_argument("TXT string longer than 255 bytes");
        w.u8(static_cast<std::uint8_t>(s.size()));
        w.bytes(s.data(), s.size());
      }
      break;
    case type_a:
    case type_aaaa:
      if (r.address.size() != (r.type == type_a ? 4u : 16u))
        throw std::invalid_argument("address record of the wrong length");
      w.bytes(r.address.data(), r.address.size());
      break;
    default:
      w.bytes(r.rdata.data(), r.rdata.size());
      break;
  }
  const std::size_t length = w.size() - start;
  if (length > 0xffff) throw std::invalid_argument("rdata longer than 65535 bytes");
  w.patch_u16(length_at, static_cast<std::uint16_t>(length));
}

// ------------------------------------------------------------------------------------------------ decoding

class Reader {
 public:
  explicit Reader(std::span<const std::uint8_t> data) : data_(data) {}

  bool u8(std::uint8_t& v) {
    if (pos_ + 1 > data_.size()) return fail("truncated");
    v = data_[pos_++];
    return true;
  }
  bool u16(std::uint16_t& v) {
    if (pos_ + 2 > data_.size()) return fail("truncated");
    v = static_cast<std::uint16_t>((data_[pos_] << 8) | data_[pos_ + 1]);
    pos_ += 2;
    return true;
  }
  bool u32(std::uint32_t& v) {
    std::uint16_t hi = 0, lo = 0;
    if (!u16(hi) || !u16(lo)) return false;
    v = (static_cast<std::uint32_t>(hi) << 16) | lo;
    return true;
  }

  // A name at the current position, following compression pointers. Each pointer must point before the
  // start of the run of labels it ends, so every jump goes strictly backwards and no packet can make it loop.
  bool name(std::string& out, std::size_t limit) {
    out.clear();
    std::size_t p = pos_;
    std::size_t run_start = pos_;
    std::size_t wire = 1;
    bool jumped = false;
    for (int hops = 0;;) {
      if (p >= limit) return fail("name runs past its record");
      const std::uint8_t len = data_[p];
      if ((len & 0xC0) == 0xC0) {
        if (p + 1 >= limit) return fail("truncated compression pointer");
        const std::size_t target = static_cast<std::size_t>(((len & 0x3F) << 8) | data_[p + 1]);
        if (target >= run_start) return fail("compression pointer does not point backwards");
        if (++hops > kMaxPointerHops) return fail("too many compression pointers");
        if (!jumped) pos_ = p + 2;
        jumped = true;
        p = run_start = target;
        limit = data_.size();  // an earlier name may lie anywhere before
        continue;
      }
      if ((len & 0xC0) != 0) return fail("unknown label type");
      if (len == 0) {
        if (!jumped) pos_ = p + 1;
        return true;
      }
      if (p + 1 + len > limit) return fail("label runs past the packet");
      wire += len + 1u;
      if (wire > kMaxName) return fail("name longer than 255 bytes");
      if (!out.empty()) out += '.';
      out += escape_label(std::string_view(reinterpret_cast<const char*>(data_.data() + p + 1),
                                           static_cast<std::size_t>(len)));
      p += 1u + len;
    }
  }

  bool record(Record& r) {
    if (!name(r.name, data_.size())) return false;
    std::uint16_t klass = 0, rdlength = 0;
    if (!u16(r.type) || !u16(klass) || !u32(r.ttl) || !u16(rdlength)) return false;
    r.cache_flush = (klass & kTopBit) != 0;
    r.klass = static_cast<std::uint16_t>(klass & 0x7fff);
    const std::size_t end = pos_ + rdlength;
    if (end > data_.size()) return fail("rdata runs past the packet");
    switch (r.type) {
      case type_ptr:
        if (!name(r.target, end)) return false;
        break;
      case type_srv:
        if (rdlength < 7) return fail("SRV record too short");
        if (!u16(r.priority) || !u16(r.weight) || !u16(r.port) || !name(r.target, end)) return false;
        break;
      case type_txt:
        while (pos_ < end) {
          const std::size_t n = data_[pos_];
          if (pos_ + 1 + n > end) return fail("TXT string runs past its record");
          if (n > 0) r.txt.emplace_back(reinterpret_cast<const char*>(data_.data() + pos_ + 1), n);
          pos_ += 1 + n;
        }
        break;
      case type_a:
      case type_aaaa:
        if (rdlength != (r.type == type_a ? 4u : 16u)) return fail("address record of the wrong length");
        r.address.assign(data_.begin() + static_cast<std::ptrdiff_t>(pos_),
                         data_.begin() + static_cast<std::ptrdiff_t>(end));
        break;
      default:
        r.rdata.assign(data_.begin() + static_cast<std::ptrdiff_t>(pos_),
                       data_.begin() + static_cast<std::ptrdiff_t>(end));
        break;
    }
    if (pos_ > end) return fail("record data longer than its length");
    pos_ = end;  // names in rdata may end before it (e.g. trailing bytes after an SRV target): skip the rest
    return true;
  }

  bool question(Question& q) {
    if (!name(q.name, data_.size())) return false;
    std::uint16_t klass = 0;
    if (!u16(q.type) || !u16(klass)) return false;
    q.unicast_response = (klass & kTopBit) != 0;
    q.klass = static_cast<std::uint16_t>(klass & 0x7fff);
    return true;
  }

  std::size_t remaining() const noexcept { return data_.size() - pos_; }
  const std::string& error() const noexcept { return error_; }

 private:
  bool fail(const char* why) {
    if (error_.empty()) error_ = why;
    return false;
  }

  std::span<const std::uint8_t> data_;
  std::size_t pos_ = 0;
  std::string error_;
};

}  // namespace

bool Record::same_data(const Record& o) const {
  return type == o.type && klass == o.klass && same_name(name, o.name) && same_name(target, o.target) &&
         priority == o.priority && weight == o.weight && port == o.port && txt == o.txt &&
         address == o.address && rdata == o.rdata;
}

std::vector<std::uint8_t> encode(const Message& m) {
  auto count = [](std::size_t n) {
    if (n > 0xffff) throw std::invalid_argument("more than 65535 entries in a DNS section");
    return static_cast<std::uint16_t>(n);
  };
  Writer w;
  w.u16(m.id);
  w.u16(m.flags);
  w.u16(count(m.questions.size()));
  w.u16(count(m.answers.size()));
  w.u16(count(m.authorities.size()));
  w.u16(count(m.additionals.size()));
  for (const auto& q : m.questions) {
    w.name(q.name, true);
    w.u16(q.type);
    w.u16(static_cast<std::uint16_t>((q.klass & 0x7fff) | (q.unicast_response ? kTopBit : 0)));
  }
  for (const auto* section : {&m.answers, &m.authorities, &m.additionals})
    for (const auto& r : *section) write_record(w, r);
  return w.take();
}

std::optional<Message> decode(std::span<const std::uint8_t> packet, std::string* error) {
  Reader r(packet);
  Message m;
  std::uint16_t qd = 0, an = 0, ns = 0, ar = 0;
  auto failed = [&]() -> std::optional<Message> {
    if (error) *error = r.error().empty() ? "malformed" : r.error();
    return std::nullopt;
  };
  if (!r.u16(m.id) || !r.u16(m.flags) || !r.u16(qd) || !r.u16(an) || !r.u16(ns) || !r.u16(ar))
    return failed();
  // Each question takes at least 5 bytes and each record 11: a count the packet cannot hold is a lie, and
  // refusing it up front also keeps a hostile count from reserving memory.
  if (std::size_t{qd} * 5 + (std::size_t{an} + ns + ar) * 11 > r.remaining()) {
    if (error) *error = "section counts larger than the packet";
    return std::nullopt;
  }
  m.questions.resize(qd);
  for (auto& q : m.questions)
    if (!r.question(q)) return failed();
  for (auto [section, n] :
       {std::pair{&m.answers, an}, std::pair{&m.authorities, ns}, std::pair{&m.additionals, ar}}) {
    section->resize(n);
    for (auto& rec : *section)
      if (!r.record(rec)) return failed();
  }
  return m;
}

std::string escape_label(std::string_view label) {
  std::string out;
  out.reserve(label.size());
  for (char c : label) {
    if (c == '.' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::vector<std::string> split_name(std::string_view name) {
  std::vector<std::string> labels;
  if (name.empty() || name == ".") return labels;
  if (name.back() == '.' && (name.size() < 2 || name[name.size() - 2] != '\\')) name.remove_suffix(1);
  std::string label;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (c == '\\') {
      if (i + 1 >= name.size()) throw std::invalid_argument("DNS name ends in a lone backslash");
      label += name[++i];
    } else if (c == '.') {
      if (label.empty()) throw std::invalid_argument("DNS name with an empty label: " + std::string(name));
      labels.push_back(std::move(label));
      label.clear();
    } else {
      label += c;
    }
  }
  if (label.empty()) throw std::invalid_argument("DNS name with an empty label: " + std::string(name));
  labels.push_back(std::move(label));
  for (const auto& l : labels)
    if (l.size() > kMaxLabel) throw std::invalid_argument("DNS label longer than 63 bytes: " + l);
  return labels;
}

std::string first_label(std::string_view name) {
  std::string label;
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (name[i] == '\\' && i + 1 < name.size()) {
      label += name[++i];
    } else if (name[i] == '.') {
      break;
    } else {
      label += name[i];
    }
  }
  return label;
}

bool same_name(std::string_view a, std::string_view b) noexcept {
  if (a.ends_with('.')) a.remove_suffix(1);
  if (b.ends_with('.')) b.remove_suffix(1);
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return lower(x) == lower(y); });
}

}  // namespace clawbot::discovery::dns
