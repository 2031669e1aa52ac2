#include "server/prefix_cache.h"

#include <algorithm>
#include <stdexcept>

namespace clawbot::server {

std::size_t common_prefix(std::span<const engine::Token> a, std::span<const engine::Token> b) {
  const auto [ia, ib] = std::mismatch(a.begin(), a.end(), b.begin(), b.end());
  return static_cast<std::size_t>(ia - a.begin());
}

TextAlignment align_by_text(std::span<const engine::Token> cached, std::span<const engine::Token> prompt,
                            const PieceOf& piece) {
  std::size_t i = 0, j = 0;
  for (;;) {
    const std::size_t same = common_prefix(cached.subspan(i), prompt.subspan(j));
    i += same;
    j += same;
    if (i == cached.size() || j == prompt.size()) break;
    // Different tokens here: spell both sides on, a token at a time on the shorter side, until the texts are
    // the same length (a shared boundary: go on token by token) or differ (the end of the match).
    std::string a, b;
    std::size_t ia = i, jb = j, checked = 0;
    bool met = false;
    for (;;) {
      if (a.size() <= b.size()) {
        if (ia == cached.size()) break;
        std::string p = piece(cached[ia]);
        if (p.empty()) break;  // shows no text: only the same token matches it
        a += p;
        ++ia;
      } else {
        if (jb == prompt.size()) break;
        std::string p = piece(prompt[jb]);
        if (p.empty()) break;
        b += p;
        ++jb;
      }
      const std::size_t n = std::min(a.size(), b.size());
      if (a.compare(checked, n - checked, b, checked, n - checked) != 0) break;
      checked = n;
      if (a.size() == b.size()) {
        met = true;
        break;
      }
    }
    if (!met) break;
    i = ia;
    j = jb;
  }
  return {i, j};
}

ColdCache::ColdCache(std::size_t capacity_bytes)
    : capacity_(capacity_bytes),
      arena_(capacity_bytes > 0 ? std::make_unique_for_overwrite<std::uint8_t[]>(capacity_bytes) : nullptr) {}

std::optional<ColdCache::Match> ColdCache::find(std::span<const engine::Token> tokens,
                                                bool exact_only) const {
  std::optional<Match> best;
  for (const auto& e : entries_) {
    const std::size_t n = common_prefix(e.tokens, tokens);
    if (exact_only && n != e.tokens.size()) continue;
    if (n > 0 && (!best || n > best->length)) best = Match{e.id, n};
  }
  return best;
}

std::span<std::uint8_t> ColdCache::insert(std::vector<engine::Token> tokens, std::size_t size) {
  if (size == 0 || size > capacity_) return {};
  if (head_ + size > capacity_) head_ = 0;  // wrap: the ring starts over at the oldest bytes
  const std::size_t begin = head_, end = head_ + size;
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->offset < end && begin < it->offset + it->size) {
      used_ -= it->size;
      ++evictions_;
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
  entries_.push_back(Entry{next_id_++, std::move(tokens), begin, size});
  used_ += size;
  head_ = end;
  return {arena_.get() + begin, size};
}

void ColdCache::shrink_last(std::size_t used) {
  if (entries_.empty() || used > entries_.back().size) return;
  auto& e = entries_.back();
  used_ -= e.size - used;
  head_ = e.offset + used;
  e.size = used;
}

void ColdCache::erase_last() {
  if (entries_.empty()) return;
  used_ -= entries_.back().size;
  head_ = entries_.back().offset;
  entries_.pop_back();
}

const ColdCache::Entry* ColdCache::entry(std::uint64_t id) const {
  for (const auto& e : entries_) {
    if (e.id == id) return &e;
  }
  return nullptr;
}

const std::vector<engine::Token>& ColdCache::tokens(std::uint64_t id) const {
  const Entry* e = entry(id);
  if (!e) throw std::logic_error("cold cache entry gone");
  return e->tokens;
}

std::span<const std::uint8_t> ColdCache::state(std::uint64_t id) const {
  const Entry* e = entry(id);
  if (!e) throw std::logic_error("cold cache entry gone");
  return {arena_.get() + e->offset, e->size};
}

void ColdCache::erase(std::uint64_t id) {
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->id == id) {
      used_ -= it->size;
      entries_.erase(it);
      return;
    }
  }
}

bool ColdCache::contains_exact(std::span<const engine::Token> tokens) const {
  return std::any_of(entries_.begin(), entries_.end(), [&](const Entry& e) {
    return e.tokens.size() == tokens.size() && std::equal(e.tokens.begin(), e.tokens.end(), tokens.begin());
  });
}

}  // namespace clawbot::server
