#include <kiln/dist/world.hpp>
#include <kiln/runtime/error.hpp>

#include <fmt/format.h>
#include <mpi.h>

#include <unistd.h>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <string_view>
#include <thread>

namespace kiln::dist {

namespace {

// What the SIGTERM handler writes: formatted beforehand, as a handler may only call async-signal-safe functions.
char stopped_message[256];

extern "C" void on_sigterm(int) {
  const ssize_t ignored = ::write(STDERR_FILENO, stopped_message, std::strlen(stopped_message));
  (void)ignored;
  ::_exit(1);
}

// mpirun stops every rank with SIGTERM when one fails: say so, instead of dying without a word.
void install_sigterm_message(const std::string& name) {
  std::snprintf(stopped_message, sizeof stopped_message,
                "kiln: dist: %s was stopped (SIGTERM) while the job ran: mpirun stops every rank when one fails or "
                "ends early, or when the job is interrupted; its message says which\n",
                name.c_str());
  struct sigaction action{};
  action.sa_handler = on_sigterm;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGTERM, &action, nullptr);
}

// An exception that escapes main would end this rank with std::terminate, while the others wait: print it and
// end the whole job now.
void terminate_job() {
  if (const std::exception_ptr e = std::current_exception()) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& error) {
      std::fprintf(stderr, "%s\n", error.what());
    } catch (...) {
      std::fprintf(stderr, "kiln: dist: an exception that is not a std::exception ended this rank\n");
    }
  }
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::abort();
}

class StatsSum final : public et::BatchStatsSum {
 public:
  explicit StatsSum(const World& world) : world_(world) {}
  void operator()(double* values, std::size_t count) const override { world_.sum(std::span<double>{values, count}); }

 private:
  const World& world_;
};

}  // namespace

struct World::Impl {
  MPI_Comm comm = MPI_COMM_NULL;  // Kiln's own copy of MPI_COMM_WORLD: the program's messages never meet Kiln's
  bool owns_mpi = false;
  std::chrono::duration<double> timeout;
  std::unique_ptr<StatsSum> stats_sum;
};

namespace {

void check(int code, const World& world, const std::string& what) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  const std::string reason(text, static_cast<std::size_t>(length));
  throw Error(fmt::format("dist: {}: {} failed: {}", world.name(), what, reason));
}

// Waits for a nonblocking collective, at most `timeout`: a rank that died or hangs never joins, and waiting on
// it would hang this one too. Polls without pause for the first 2 ms (a step's all-reduce takes about 0.1 ms: a
// pause would cost more), then yields the core between polls, as ranks may share cores (mpirun --oversubscribe).
void wait(MPI_Request& request, const World& world, std::chrono::duration<double> timeout, const std::string& what) {
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout);
  bool patient = false;
  for (unsigned polls = 0;; ++polls) {
    int done = 0;
    check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), world, what);
    if (done) return;
    if (patient) std::this_thread::yield();
    if (polls % 256 != 255) continue;
    const auto now = std::chrono::steady_clock::now();
    patient = now - start > std::chrono::milliseconds{2};
    if (now > deadline)
      throw Error(
          fmt::format("dist: {}: {} did not complete within {:.0f} s: another rank has failed or stopped "
                      "taking part",
                      world.name(), what, timeout.count()));
  }
}

}  // namespace

World::World(int& argc, char**& argv, std::chrono::duration<double> timeout)
    : impl_(std::make_unique<Impl>()), uncaught_at_start_(std::uncaught_exceptions()) {
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (!initialised) {
    // Open MPI's nonblocking all-reduce as a ring: 0.074 ms for the main job's 0.8 MB of gradients on 2 ranks of
    // the AMD EPYC, against 0.149 ms for its default choice; and ranks on one machine passing large messages
    // through shared memory rather than reading each other's with a system call (CMA): 0.041 ms against 0.070
    // (bench/README.md, "Data-parallel scaling"). The program's own settings win.
    ::setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "1", /*overwrite=*/0);
    ::setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", /*overwrite=*/0);
    int provided = 0;
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
      throw Error("dist: MPI_Init_thread failed (is this program started by mpirun?)");
    impl_->owns_mpi = true;
  }
  MPI_Comm_dup(MPI_COMM_WORLD, &impl_->comm);
  MPI_Comm_set_errhandler(impl_->comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank(impl_->comm, &rank_);
  MPI_Comm_size(impl_->comm, &size_);
  impl_->timeout = timeout;
  impl_->stats_sum = std::make_unique<StatsSum>(*this);
  install_sigterm_message(name());
  std::set_terminate(terminate_job);
}

World::~World() {
  // Ending with an exception: leave without MPI_Finalize (which would wait for the other ranks, who may be waiting
  // for this one); mpirun sees this rank end without it and stops the job.
  if (std::uncaught_exceptions() > uncaught_at_start_) return;
  MPI_Comm_free(&impl_->comm);
  if (impl_->owns_mpi) MPI_Finalize();
}

std::string World::name() const { return fmt::format("rank {} of {}", rank_, size_); }

namespace {

// Starts a nonblocking collective (start(request) returns its MPI code) and waits for it (wait above).
template <class Start>
void run_collective(const World& world, std::chrono::duration<double> timeout, const std::string& what, Start start) {
  MPI_Request request;
  check(start(request), world, what);
  wait(request, world, timeout, what);
}

// MPI counts elements in an int: a larger span would be cut short, silently.
int mpi_count(std::size_t count, const World& world, const std::string& what) {
  if (count > static_cast<std::size_t>(std::numeric_limits<int>::max()))
    throw Error(fmt::format("dist: {}: {}: {} elements, more than MPI's int count holds", world.name(), what, count));
  return static_cast<int>(count);
}

template <class T>
void sum_in_place(const World& world, std::chrono::duration<double> timeout, MPI_Comm comm, std::span<T> values,
                  MPI_Datatype type, std::string_view type_name) {
  const std::string what = fmt::format("the all-reduce of {} {}", values.size(), type_name);
  const int count = mpi_count(values.size(), world, what);
  run_collective(world, timeout, what, [&](MPI_Request& request) {
    return MPI_Iallreduce(MPI_IN_PLACE, values.data(), count, type, MPI_SUM, comm, &request);
  });
}

}  // namespace

void World::sum(std::span<float> values) const {
  sum_in_place(*this, impl_->timeout, impl_->comm, values, MPI_FLOAT, "floats");
}

void World::sum(std::span<double> values) const {
  sum_in_place(*this, impl_->timeout, impl_->comm, values, MPI_DOUBLE, "doubles");
}

void World::broadcast(std::span<std::byte> bytes, int root) const {
  const std::string what = fmt::format("the broadcast of {} bytes from rank {}", bytes.size(), root);
  const int count = mpi_count(bytes.size(), *this, what);
  run_collective(*this, impl_->timeout, what, [&](MPI_Request& request) {
    return MPI_Ibcast(bytes.data(), count, MPI_BYTE, root, impl_->comm, &request);
  });
}

std::vector<std::uint64_t> World::all_gather(std::uint64_t value) const {
  std::vector<std::uint64_t> values(static_cast<std::size_t>(size_));
  run_collective(*this, impl_->timeout, "an all-gather", [&](MPI_Request& request) {
    return MPI_Iallgather(&value, 1, MPI_UINT64_T, values.data(), 1, MPI_UINT64_T, impl_->comm, &request);
  });
  return values;
}

void World::barrier() const {
  run_collective(*this, impl_->timeout, "a barrier",
                 [&](MPI_Request& request) { return MPI_Ibarrier(impl_->comm, &request); });
}

void World::on_root(const std::function<void()>& work, const std::string& what) const {
  std::string error;
  if (is_root()) {
    try {
      work();
    } catch (const std::exception& e) {
      error = e.what();
      if (error.empty()) error = "an error without a message";
    }
  }
  std::uint64_t length = error.size();
  broadcast(std::as_writable_bytes(std::span{&length, 1}));
  error.resize(length);
  broadcast(std::as_writable_bytes(std::span{error.data(), error.size()}));
  if (error.empty()) return;
  if (error.starts_with("kiln: ")) error.erase(0, 6);  // the Error below says it again
  throw Error(fmt::format("dist: {}: rank 0 could not {}: {}", name(), what, error));
}

const et::BatchStatsSum& World::batch_stats_sum() const { return *impl_->stats_sum; }

}  // namespace kiln::dist
