#include "monitor/top_screen.h"

#include <clocale>
#include <cstdio>
#include <string>

#include <ncurses.h>

namespace clawbot::monitor::top {

namespace {

// Names and messages come from the server: no control character reaches the terminal.
std::string printable(const std::string& text) {
  std::string out = text;
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return out;
}

}  // namespace

Screen::Screen() {
  std::setlocale(LC_ALL, "");
  screen_ = newterm(nullptr, stdout, stdin);
  if (!screen_) return;
  set_term(screen_);
  cbreak();  // keys one by one, and Ctrl-C still a signal
  noecho();
  keypad(stdscr, TRUE);
  nodelay(stdscr, TRUE);
  curs_set(0);
  if (has_colors()) {
    start_color();
    use_default_colors();
    init_pair(1, COLOR_GREEN, -1);
    init_pair(2, COLOR_YELLOW, -1);
    init_pair(3, COLOR_RED, -1);
    colours_ = true;
  }
}

Screen::~Screen() {
  if (!screen_) return;
  endwin();
  delscreen(screen_);
}

int Screen::columns() const {
  return COLS;
}

void Screen::invalidate() {
  clearok(curscr, TRUE);
}

Key Screen::next_key() {
  const int key = getch();
  if (key == ERR) return Key::none;
  if (key == 'q' || key == 'Q') return Key::quit;
  if (key == KEY_RESIZE || key == 12 /* Ctrl-L */) return Key::redraw;
  return Key::other;
}

void Screen::draw(const std::vector<Line>& lines) {
  const auto attribute = [this](Style style) -> int {
    const auto colour = [this](short pair) { return colours_ ? static_cast<int>(COLOR_PAIR(pair)) : 0; };
    switch (style) {
      case Style::title:
      case Style::label:
        return A_BOLD;
      case Style::good:
        return colour(1);
      case Style::warn:
        return colour(2) | A_BOLD;
      case Style::bad:
        return colour(3) | A_BOLD;
      case Style::dim:
        return A_DIM;
      case Style::normal:
        break;
    }
    return A_NORMAL;
  };
  erase();
  const int rows = LINES, cols = COLS;
  for (int row = 0; row < rows && row < static_cast<int>(lines.size()); ++row) {
    int col = 0;
    for (const auto& piece : lines[static_cast<std::size_t>(row)]) {
      if (col >= cols) break;
      const std::string text = printable(piece.text);
      attrset(attribute(piece.style));
      mvaddnstr(row, col, text.c_str(), cols - col);
      col += static_cast<int>(text.size());
    }
  }
  attrset(A_NORMAL);
  refresh();
}

}  // namespace clawbot::monitor::top
