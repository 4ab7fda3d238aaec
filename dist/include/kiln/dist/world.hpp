// kiln::dist::World: this process's place in an MPI job (rank, size) and the collectives data-parallel training
// needs. The only part of Kiln that uses MPI (kiln::dist, built with -DKILN_MPI=ON); this header does not
// include <mpi.h>.
//
//   int main(int argc, char** argv) {
//     kiln::dist::World world{argc, argv};   // MPI_Init; MPI_Finalize when it ends
//     fmt::print("rank {} of {}\n", world.rank(), world.size());
//   }
//
// Failures: a collective throws kiln::Error naming the rank and the operation when MPI reports an error or the
// other ranks do not join within the timeout (a rank that died or hangs). A rank that ends with an exception
// leaves the job without MPI_Finalize, so mpirun stops the others; a rank that mpirun stops that way (SIGTERM)
// says so on stderr and exits with status 1, instead of waiting for the dead rank.
#pragma once

#include <kiln/et/shard.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace kiln::dist {

class World {
 public:
  // Initialises MPI (unless the program already did: then it is left to the program to finalise).
  World(int& argc, char**& argv, std::chrono::duration<double> timeout = std::chrono::seconds{120});
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }

  // Collectives: every rank calls them, in the same order. In place.
  void sum(std::span<float> values) const;
  void sum(std::span<double> values) const;
  void broadcast(std::span<std::byte> bytes, int root = 0) const;
  std::vector<std::uint64_t> all_gather(std::uint64_t value) const;
  void barrier() const;
  // Runs `work` on rank 0 only; every rank returns when it is done, or throws the kiln::Error it raised.
  void on_root(const std::function<void()>& work, const std::string& what) const;

  // sum() for BatchNorm1d's statistics (SyncBatchNorm): kiln::et's hook into this world.
  const et::BatchStatsSum& batch_stats_sum() const;

  // "rank 1 of 2": how errors name this process.
  std::string name() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int rank_ = 0, size_ = 1;
  int uncaught_at_start_ = 0;
};

}  // namespace kiln::dist
