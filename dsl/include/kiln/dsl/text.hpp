// Compile-time text: the sentences of Kiln's compile-time errors and the names in the parameter schema.
// C++20's static_assert takes only a literal message, so an error sentence is built as a Text at compile
// time, copied into a FixedString, and carried as a template argument: g++ and clang both print it.
#pragma once

#include <cstddef>
#include <string_view>

namespace kiln {

// A constexpr string with fixed capacity. Appending past the capacity truncates (messages stay short).
struct Text {
  static constexpr std::size_t capacity = 200;
  char chars[capacity + 1]{};
  std::size_t length = 0;

  constexpr Text() = default;
  constexpr Text(std::string_view s) { *this += s; }  // NOLINT: implicit on purpose
  constexpr Text(const char* s) : Text(std::string_view{s}) {}  // NOLINT

  constexpr std::string_view view() const { return {chars, length}; }
  constexpr bool empty() const { return length == 0; }

  // Not inlined: at run time (a model's schema, summary, description) an inlined copy of these loops in every
  // network's code cost 5% of a test file's compile time, for no speed that matters.
  [[gnu::noinline]] constexpr Text& operator+=(std::string_view s) {
    for (char c : s)
      if (length < capacity) chars[length++] = c;
    return *this;
  }
  constexpr Text& operator+=(const Text& t) { return *this += t.view(); }
  constexpr Text& operator+=(const char* s) { return *this += std::string_view{s}; }
  [[gnu::noinline]] constexpr Text& operator+=(long long n) {
    if (n < 0) {
      *this += "-";
      n = -n;
    }
    char digits[24]{};
    int count = 0;
    do {
      digits[count++] = static_cast<char>('0' + n % 10);
      n /= 10;
    } while (n != 0);
    while (count > 0)
      if (length < capacity) chars[length++] = digits[--count];
      else --count;
    return *this;
  }
  constexpr Text& operator+=(long n) { return *this += static_cast<long long>(n); }
  constexpr Text& operator+=(int n) { return *this += static_cast<long long>(n); }

  template <class T>
  friend constexpr Text operator+(Text a, const T& b) {
    a += b;
    return a;
  }
  friend constexpr bool operator==(const Text& a, const Text& b) { return a.view() == b.view(); }
};

// A string literal usable as a template argument. Only its exact length is stored, so compilers print
// it as "..." without padding.
template <std::size_t N>
struct FixedString {
  char text[N + 1]{};
  constexpr FixedString(const char* s) {  // NOLINT: implicit on purpose
    for (std::size_t i = 0; i < N; ++i) text[i] = s[i];
    text[N] = '\0';  // written, not left to the initializer: clang then prints the argument as a string
  }
  constexpr std::string_view view() const { return {text, N}; }
};

}  // namespace kiln
