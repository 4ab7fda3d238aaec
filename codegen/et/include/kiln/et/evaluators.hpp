// Every layer's expression-template evaluator (the one list of et's layer headers).
#pragma once

#include <kiln/et/activations.hpp>
#include <kiln/et/batchnorm.hpp>
#include <kiln/et/bilinear.hpp>
#include <kiln/et/dropout.hpp>
#include <kiln/et/linear.hpp>
#include <kiln/et/norms.hpp>
#include <kiln/et/reshape.hpp>
#include <kiln/et/softmax.hpp>
