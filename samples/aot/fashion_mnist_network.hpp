// The Fashion-MNIST network of the samples, in a header of its own so that kiln_add_kernel can compile it
// ahead of time (samples/CMakeLists.txt) and the program that links the kernel can name it too.
#pragma once

#include <kiln/kiln.hpp>

inline constexpr kiln::nn::Sequential fashion_mnist_net{
    kiln::input<1, 28, 28>, kiln::nn::Flatten{},     kiln::nn::Linear<784, 256>{}, kiln::nn::BatchNorm1d<256>{},
    kiln::nn::ReLU{},       kiln::nn::Dropout{0.2f}, kiln::nn::Linear<256, 10>{}};
