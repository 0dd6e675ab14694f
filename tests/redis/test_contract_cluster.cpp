// The contract suite (test_contract.cpp) over its third backend, a Redis
// Cluster (redis+cluster://): the same source, with only that backend, in a
// binary of its own, which ctest runs as one test so that one cluster
// (started once, ~2 s) serves every test (tests/CMakeLists.txt).
#define JOBRING_CONTRACT_CLUSTER 1
#include "redis/test_contract.cpp"  // NOLINT(bugprone-suspicious-include)
