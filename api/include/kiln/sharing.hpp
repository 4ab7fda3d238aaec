// How one kiln::Model is shared between threads: any number of eval-mode calls at once, each with a workspace of
// its own; anything that changes the model (a train-mode call, a load, train()/eval(), an optimizer's
// parameters_changed) alone. A change while calls run, or a call while a change runs, is refused with a
// kiln::Error rather than waited for: neither side takes a lock.
#pragma once

#include <kiln/runtime/error.hpp>

#include <fmt/format.h>

#include <array>
#include <atomic>
#include <memory>

namespace kiln::detail {

// The model's users: n > 0 calls sharing it, -1 one change, 0 none.
class Users {
 public:
  // Held for the lifetime of the object: shared (an eval-mode call) or exclusive (a change). `what` names the
  // operation in the error.
  class Hold {
   public:
    Hold(const Users& users, bool exclusive, const char* what) : users_(users), exclusive_(exclusive) {
      int n = users_.count_.load(std::memory_order_acquire);
      if (exclusive) {
        if (n == 0 && users_.count_.compare_exchange_strong(n, -1, std::memory_order_acq_rel)) return;
        throw Error(n > 0 ? fmt::format("{}: refused while {} call(s) of the model run on other threads", what, n)
                          : fmt::format("{}: refused while another thread changes the model", what));
      }
      do {
        if (n < 0) throw Error(fmt::format("{}: refused while another thread changes the model (a load, a "
                                           "train-mode call, train()/eval())", what));
      } while (!users_.count_.compare_exchange_weak(n, n + 1, std::memory_order_acq_rel, std::memory_order_acquire));
      alone_ = n == 0;
    }
    // No other holder shares the model while this one lives: it is exclusive, or the count went from 0 (a later
    // holder finds it above 0 until this one ends).
    bool alone() const { return exclusive_ || alone_; }
    ~Hold() {
      if (exclusive_) users_.count_.store(0, std::memory_order_release);
      else users_.count_.fetch_sub(1, std::memory_order_release);
    }
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;

   private:
    const Users& users_;
    bool exclusive_;
    bool alone_ = false;
  };

 private:
  mutable std::atomic<int> count_{0};
};

// Workspaces for calls that may run at once: a call takes one (made on the spot when every slot is empty) and
// gives it back (freed when every slot is full). One thread calling again and again finds its workspace in the
// first slot: no allocation after the first call.
template <class Workspace, std::size_t Slots = 8>
class WorkspacePool {
 public:
  WorkspacePool() = default;
  WorkspacePool(const WorkspacePool&) = delete;
  WorkspacePool& operator=(const WorkspacePool&) = delete;
  ~WorkspacePool() {
    for (auto& slot : slots_) delete slot.load();
  }
  std::unique_ptr<Workspace> take() const {
    for (auto& slot : slots_)
      if (Workspace* w = slot.exchange(nullptr, std::memory_order_acquire)) return std::unique_ptr<Workspace>(w);
    return std::make_unique<Workspace>();
  }
  void give_back(std::unique_ptr<Workspace> w) const {
    for (auto& slot : slots_) {
      Workspace* empty = nullptr;
      if (slot.compare_exchange_strong(empty, w.get(), std::memory_order_release, std::memory_order_relaxed)) {
        w.release();
        return;
      }
    }
  }

 private:
  mutable std::array<std::atomic<Workspace*>, Slots> slots_{};
};

}  // namespace kiln::detail
