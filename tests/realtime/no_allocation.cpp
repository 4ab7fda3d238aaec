// Real-time use: after the first call, model.forward(x, y) into a preallocated y on one thread allocates nothing
// and takes no lock, in eval and in train mode. This program counts both: it replaces operator new and
// interposes malloc and pthread_mutex_lock (glibc lets the program define them), then runs calls between
// two readings of the counters.
#include <kiln/kiln.hpp>

#include <dlfcn.h>
#include <pthread.h>

#include <atomic>
#include <cstdlib>
#include <new>

extern "C" void* __libc_malloc(std::size_t);
extern "C" void __libc_free(void*);

namespace {
std::atomic<long> allocations{0}, locks{0};
// The C library's pthread_mutex_lock, found before main (dlsym may take locks of its own).
using MutexLock = int (*)(pthread_mutex_t*);
MutexLock real_mutex_lock = reinterpret_cast<MutexLock>(dlsym(RTLD_NEXT, "pthread_mutex_lock"));
}  // namespace

extern "C" void* malloc(std::size_t n) {
  ++allocations;
  return __libc_malloc(n);
}
extern "C" int pthread_mutex_lock(pthread_mutex_t* m) {
  ++locks;
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
  if (posix_memalign(&p, static_cast<std::size_t>(a), n == 0 ? 1 : n) != 0) throw std::bad_alloc{};
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

namespace nn = kiln::nn;

// Every kind of state a call keeps: BatchNorm1d (per-call scale and shift; running statistics in train mode),
// Dropout, LayerNorm, a residual and a concat (stored values), a Bilinear's second input.
constexpr nn::Sequential net{kiln::input<12>, kiln::input<6>, nn::Bilinear<12, 6, 32>{}, nn::BatchNorm1d<32>{},
                             nn::ReLU{}, nn::Residual{nn::LayerNorm<32>{}, nn::Linear<32, 32>{}, nn::GELU{}},
                             nn::Concat{nn::Identity{}, nn::Sequential{nn::Linear<32, 8>{}, nn::Dropout{0.25f}}},
                             nn::Linear<40, 5>{}, nn::Softmax<-1>{}};

template <class Model>
bool quiet_calls(Model& model, const char* mode) {
  for (const kiln::index_t batch : {2, 37, 256}) {  // BatchNorm1d in train mode needs 2 rows
    kiln::Tensor x1({batch, 12}), x2({batch, 6}), y({batch, 5});
    for (kiln::index_t i = 0; i < x1.numel(); ++i) x1[i] = std::sin(0.1f * static_cast<float>(i));
    for (kiln::index_t i = 0; i < x2.numel(); ++i) x2[i] = std::cos(0.3f * static_cast<float>(i));
    model.forward(x1, x2, y);  // the first call at this batch size may allocate (the workspace grows)
    const long a = allocations.load(), l = locks.load();
    for (int i = 0; i < 20; ++i) model.forward(x1, x2, y);
    const long da = allocations.load() - a, dl = locks.load() - l;
    fmt::print("{} mode, batch {}: 20 calls, {} allocations, {} locks\n", mode, batch, da, dl);
    if (da != 0 || dl != 0) return false;
  }
  return true;
}

int main() {
  kiln::set_num_threads(1);
  kiln::Model model{net, 5};
  // The counters count: a vector's allocation and a mutex taken here must show.
  const long a = allocations.load();
  std::vector<int> probe(100);
  pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
  const long l = locks.load();
  pthread_mutex_lock(&m);
  pthread_mutex_unlock(&m);
  if (allocations.load() == a || locks.load() == l || probe.empty()) {
    fmt::print("the counters do not count\n");
    return 1;
  }
  const bool train_ok = quiet_calls(model, "train");
  model.eval();
  const bool eval_ok = quiet_calls(model, "eval");
  if (!train_ok || !eval_ok) return 1;
  fmt::print("no allocation and no lock after the first call\n");
}
