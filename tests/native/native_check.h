// The tiny check harness shared by the native (Python-free) test programs: CHECK counts a
// failure and prints where, so one run reports every broken check; main returns `failures`.
#pragma once
#include <cstdio>

static int failures = 0;
#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (!(cond)) {                                         \
      std::printf("FAIL %s:%d: ", __FILE__, __LINE__);     \
      std::printf(__VA_ARGS__);                            \
      std::printf("\n");                                   \
      ++failures;                                          \
    }                                                      \
  } while (0)
