// Internal: checkpoints. A folder holding manifest.json, which names the parameter and
// optimizer .npz files of one step.
//
// Note [Atomic checkpoints]
// The .npz files of step S are written under new names (params-S.npz, optimizer-S.npz), each
// atomically (temporary file, fsync, rename); the manifest is written last, atomically, and only
// then are the previous step's files removed. A crash at any point leaves a manifest that
// names complete files: the last checkpoint or the new one, never a mixture.
//
// Note [One run per folder]
// A run that trains into a folder holds an advisory lock on DIR/.lock (flock, released by the
// kernel when the process ends, however it ends) for its whole life; a second run on the same
// folder is refused while the first holds it. A run that does not --resume refuses a folder
// that already holds a checkpoint unless --overwrite is given, which removes the old
// checkpoint (manifest first) before anything new is written. Holding the lock, a run removes
// what an interrupted one left behind: temporary files of unfinished atomic writes and
// parameter or optimizer files no manifest names. The manifest names the run (a run id kept
// by --resume), the function trained, the seed and the batch, so that a resumed run or an
// eval can refuse a checkpoint that is not the one it thinks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "wengert/json.hpp"
#include "wengert/optim.hpp"
#include "wengert/params.hpp"

namespace wengert::dsl {

struct CheckpointInfo {
    std::string run_id;           // chosen when a run starts a folder, kept by --resume
    std::string function;         // the function trained (empty in older checkpoints)
    std::int64_t batch = 0;       // the batch size (0 in older checkpoints)
    std::string model;            // the model file's path as given
    std::string model_hash;       // of the model's source text
    // The model's declarations as S-expressions, one per line, without the train settings
    // that only say how long and where to train (Note [Resuming a changed file] in trainer.cpp):
    // what a resumed run compares when the text changed. Empty in older checkpoints.
    std::string model_structure;
    std::int64_t step = 0;        // optimizer steps taken
    std::int64_t epoch = 0;       // completed epochs
    std::int64_t steps_per_epoch = 0, total_steps = 0;   // of the run (0 in older checkpoints)
    std::uint64_t seed = 0;
    std::string dtype;
    std::uint64_t rng_seed = 0, rng_offset = 0;   // the default generator's state
    std::string optimizer;        // "adam", ... or empty
    // The running sums (value times examples) of the epoch in progress, so a run resumed
    // mid-epoch reports the same epoch means as an uninterrupted one.
    std::vector<std::pair<std::string, double>> epoch_sums;
    std::int64_t epoch_examples = 0;
    // The training control's state (reduce_on_plateau, early_stopping, keep_best), and for a
    // best checkpoint what it is the best of; null when the run has none.
    Json control;
};

// Writes `dir` (created if missing) as described in Note [Atomic checkpoints].
void save_checkpoint(const std::string& dir, const CheckpointInfo& info, const ParamStore& params,
                     const Optimizer* optimizer);

struct LoadedCheckpoint {
    CheckpointInfo info;
    std::string params_path;      // the parameter file the manifest names
    NamedTensors params;
    std::string optimizer_path;   // the optimizer state file it names, if any
    NamedTensors optimizer_state;
};

// Reads a checkpoint folder; a missing or corrupt manifest or file is an IOError saying which.
LoadedCheckpoint load_checkpoint(const std::string& dir);

// A checkpoint folder another run holds, or one a run would overwrite (exit 73).
class FolderInUse : public IOError {
public:
    using IOError::IOError;
};

// The advisory lock of a checkpoint folder (created if missing), held while this lives
// (Note [One run per folder]); FolderInUse when another process holds it.
class FolderLock {
public:
    explicit FolderLock(const std::string& dir);
    ~FolderLock();
    FolderLock(const FolderLock&) = delete;
    FolderLock& operator=(const FolderLock&) = delete;

private:
    int fd_ = -1;
};

// Whether `dir` holds a checkpoint manifest.
bool has_checkpoint(const std::string& dir);

// The folder inside a checkpoint folder that keeps its run's best checkpoint (keep_best).
std::string best_checkpoint_dir(const std::string& dir);

// Removes the checkpoint in `dir`: the manifest first, then the files it names; and its best
// checkpoint, if any.
void remove_checkpoint(const std::string& dir);

// Removes temporary files and parameter/optimizer files the manifest does not name, left by an
// interrupted run, in `dir` and in its best checkpoint's folder. Only while holding the
// folder's lock.
void clean_checkpoint_folder(const std::string& dir);

// A fresh run id: 16 hex digits from the clock and the process id (never from the run's
// seed, which must not be disturbed).
std::string new_run_id();

// Copies named tensors into the store. Parameters of the model missing from `values`, entries
// the model does not have, and shape mismatches are one error listing them all; `source` names
// where the values came from.
void assign_params(ParamStore& params, const NamedTensors& values, const std::string& source);

// What assign_params_partial did: the parameters it loaded, the file's entries it skipped (with
// why), and the model's parameters the file did not have, left at their initialisers.
struct PartialLoad {
    std::vector<std::string> loaded, skipped, left;
};
// Copies the entries of `values` that match a parameter by name, shape and floating dtype.
PartialLoad assign_params_partial(ParamStore& params, const NamedTensors& values);

// The parameters a warm start (--init) reads: an .npz file of them, or a checkpoint folder's.
NamedTensors load_init_params(const std::string& path);

// FNV-1a of a text, as 16 hex digits.
std::string text_hash(const std::string& text);

}  // namespace wengert::dsl
