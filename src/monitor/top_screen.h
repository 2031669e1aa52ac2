// `clawbot top`'s terminal: ncurses behind a narrow interface (its macros, erase, timeout, refresh ..., clash
// with Boost.Asio's names, so no other file includes ncurses.h).
#pragma once

#include <vector>

#include "monitor/top_figures.h"

struct screen;  // ncurses' SCREEN

namespace clawbot::monitor::top {

enum class Key { none, quit, redraw, other };

// The terminal, taken over while this lives (newterm: a terminal that TERM does not describe is an error to
// report, not an exit inside ncurses). Keys one at a time without waiting; Ctrl-C stays a signal.
class Screen {
 public:
  Screen();
  ~Screen();
  Screen(const Screen&) = delete;
  Screen& operator=(const Screen&) = delete;
  explicit operator bool() const noexcept { return screen_ != nullptr; }

  int columns() const;
  void draw(const std::vector<Line>& lines);
  void invalidate();  // the next draw repaints every cell (a resize, Ctrl-L)
  Key next_key();     // none when no key is waiting; q quits; a resize or Ctrl-L redraws

 private:
  ::screen* screen_ = nullptr;
  bool colours_ = false;
};

}  // namespace clawbot::monitor::top
