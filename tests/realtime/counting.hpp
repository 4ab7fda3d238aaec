// The counters of the real-time tests: this header replaces operator new and interposes malloc and
// pthread_mutex_lock (glibc lets the program define them), counting each; include it in one file of a program.
#pragma once

#include <dlfcn.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

extern "C" void* __libc_malloc(std::size_t);
extern "C" void __libc_free(void*);

namespace {
std::atomic<long> allocations{0}, locks{0};
// The C library's pthread_mutex_lock, found on the first call: a library's static initializers (LLVM's) may lock
// before this program's run.
using MutexLock = int (*)(pthread_mutex_t*);
MutexLock real_mutex_lock = nullptr;
}  // namespace

extern "C" void* malloc(std::size_t n) {
  ++allocations;
  return __libc_malloc(n);
}
extern "C" int pthread_mutex_lock(pthread_mutex_t* m) {
  ++locks;
  if (!real_mutex_lock) real_mutex_lock = reinterpret_cast<MutexLock>(dlsym(RTLD_NEXT, "pthread_mutex_lock"));
  return real_mutex_lock(m);
}
void* operator new(std::size_t n) {
  ++allocations;
  if (void* p = __libc_malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc{};
}
void* operator new[](std::size_t n) { return operator new(n); }
void* operator new(std::size_t n, std::align_val_t a) {
  ++allocations;
  void* p = nullptr;
  const std::size_t alignment = std::max(static_cast<std::size_t>(a), sizeof(void*));  // posix_memalign's least
  if (posix_memalign(&p, alignment, n == 0 ? 1 : n) != 0) throw std::bad_alloc{};
  return p;
}
void* operator new[](std::size_t n, std::align_val_t a) { return operator new(n, a); }
void operator delete(void* p) noexcept { __libc_free(p); }
void operator delete(void* p, std::size_t) noexcept { __libc_free(p); }
void operator delete[](void* p) noexcept { __libc_free(p); }
void operator delete[](void* p, std::size_t) noexcept { __libc_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { __libc_free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { __libc_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { __libc_free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { __libc_free(p); }

// Whether the counters count: a vector's allocation and a mutex taken here must show.
inline bool counters_count() {
  const long a = allocations.load();
  std::vector<int> probe(100);
  pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
  const long l = locks.load();
  pthread_mutex_lock(&m);
  pthread_mutex_unlock(&m);
  return allocations.load() != a && locks.load() != l && !probe.empty();
}
