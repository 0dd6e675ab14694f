// The Worker's contract suite (test_worker_contract.cpp) over a Redis Cluster
// (redis+cluster://): the same source, with only that backend, in a binary
// of its own, which ctest runs as one test so that one cluster (started
// once, ~2 s) serves every test (tests/CMakeLists.txt). The queues of a test
// land on different shards, so a Worker of several queues here polls them
// (RedisQueue::claim_any cannot BLPOP across hash slots).
#define JOBRING_WORKER_CONTRACT_CLUSTER 1
#include "redis/test_worker_contract.cpp"  // NOLINT(bugprone-suspicious-include)
