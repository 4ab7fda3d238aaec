// Every layer of kiln::nn: include this to have them all (the one list of layer headers).
#pragma once

#include <kiln/dsl/layers/activations.hpp>
#include <kiln/dsl/layers/batchnorm.hpp>
#include <kiln/dsl/layers/bilinear.hpp>
#include <kiln/dsl/layers/dropout.hpp>
#include <kiln/dsl/layers/linear.hpp>
#include <kiln/dsl/layers/norms.hpp>
#include <kiln/dsl/layers/reshape.hpp>
#include <kiln/dsl/layers/softmax.hpp>
