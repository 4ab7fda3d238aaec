// kiln::dist: data-parallel training over MPI (kiln::dist::World, DataParallel, save_model / save_optimizer).
// Link kiln::dist (built when CMake finds MPI and KILN_MPI is ON); start the program with mpirun.
#pragma once

#include <kiln/dist/data_parallel.hpp>
#include <kiln/dist/world.hpp>
