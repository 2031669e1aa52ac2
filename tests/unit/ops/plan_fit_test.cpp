// serve --fit's search (ops::fit_serving_size) and the binary search it shares with `clawbot plan`
// (ops::largest_fitting), against budgets whose answers are known: no model, no memory probe.
#include <gtest/gtest.h>

#include "ops/plan.h"

namespace clawbot::ops {
namespace {

// A machine that holds `cells` KV cells in all: a configuration fits when ctx x parallel cells do.
auto cells_budget(long long cells) {
  return [cells](const ServingSize& s) { return static_cast<long long>(s.ctx) * s.parallel <= cells; };
}

TEST(LargestFitting, FindsTheBoundAndSaysZeroWhenNothingFits) {
  EXPECT_EQ(largest_fitting(1, 100, [](int n) { return n <= 37; }), 37);
  EXPECT_EQ(largest_fitting(1, 100, [](int n) { return n <= 500; }), 100);
  EXPECT_EQ(largest_fitting(1, 100, [](int) { return false; }), 0);
  EXPECT_EQ(largest_fitting(5, 5, [](int n) { return n == 5; }), 5);
}

TEST(FitServingSize, LowersTheContextFirstToTheLargestMultipleOf256) {
  // 4 slots of 65536 do not fit 50000 cells; 4 slots of 12288 (48 x 256) do, 12544 do not.
  const ServingSize size = fit_serving_size({.ctx = 65536, .parallel = 4}, cells_budget(50000));
  EXPECT_EQ(size.ctx, 12288);
  EXPECT_EQ(size.parallel, 4);
}

TEST(FitServingSize, LowersTheSlotsOnceTheContextIsAt512) {
  // Even 512 tokens a slot fit only 3 slots of 1600 cells.
  const ServingSize size = fit_serving_size({.ctx = 8192, .parallel = 8}, cells_budget(1600));
  EXPECT_EQ(size.ctx, 512);
  EXPECT_EQ(size.parallel, 3);
}

TEST(FitServingSize, KeepsASmallContextAndLowersOnlyTheSlots) {
  // --ctx 300 is below the floor: it stays, and the slots go down.
  const ServingSize size = fit_serving_size({.ctx = 300, .parallel = 4}, cells_budget(700));
  EXPECT_EQ(size.ctx, 300);
  EXPECT_EQ(size.parallel, 2);
}

TEST(FitServingSize, AnswersTheSmallestTriedWhenNothingFits) {
  const auto fits = cells_budget(100);
  const ServingSize size = fit_serving_size({.ctx = 4096, .parallel = 4}, fits);
  EXPECT_EQ(size.ctx, 512);
  EXPECT_EQ(size.parallel, 1);
  EXPECT_FALSE(fits(size));  // the caller sees that this does not fit either, and says so
}

}  // namespace
}  // namespace clawbot::ops
