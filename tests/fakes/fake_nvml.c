/* A fake libnvidia-ml.so.1 for tests on machines without a GPU.
 *
 * It implements only the NVML entry points devloop's sampler reaches through the real pynvml
 * (nvidia-ml-py), so the tests exercise pynvml's ctypes calls, structs and error mapping for
 * real; only the driver behind them is scripted. Built by tests/fakes/nvml.py with gcc.
 *
 * Values come from the file named by $FAKE_NVML_CONFIG, read at nvmlInit, one `key=value` a line:
 *   init=9                    nvmlInit* returns this code (9 = NVML_ERROR_DRIVER_NOT_LOADED)
 *   count=2                   number of GPUs (at most 64)
 *   driver=550.54.15
 *   proc.1234=python3         nvmlSystemGetProcessName(1234)
 *   N.FIELD=VALUE             a field of GPU N: name uuid util mem_used mem_reserved mem_total
 *                             temp power_mw power_limit_mw mem_v2
 *   N.procs=PID:BYTES,...     compute processes (BYTES `na` = NVML_VALUE_NOT_AVAILABLE)
 *   N.gprocs=PID:BYTES,...    graphics processes
 * A numeric VALUE may be a comma list: each call returns the next one (cycling), so a test can
 * script a changing utilisation. A VALUE `!CODE` makes that query return the NVML error CODE
 * (`!3` = NVML_ERROR_NOT_SUPPORTED). If $FAKE_NVML_LOG is set, each nvmlInit or nvmlShutdown call
 * appends one line to it, so a test can count initialisations.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int nvmlReturn_t;

#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_NOT_FOUND 6
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_ARGUMENT_VERSION_MISMATCH 25
#define NVML_MEMORY_V2 0x02000028u

#define MAX_GPUS 64
#define MAX_SEQ 32
#define MAX_PROCS 16
#define MAX_NAMES 32

typedef struct {
    int error;                      /* non-zero: the query returns this code */
    int n;                          /* number of values in the cycle */
    int next;
    unsigned long long values[MAX_SEQ];
} field_t;

typedef struct {
    unsigned int pid;
    unsigned long long mem;
} proc_t;

typedef struct {
    int error;
    int n;
    proc_t items[MAX_PROCS];
} procs_t;

typedef struct {
    char name[96];
    int name_error;
    char uuid[96];
    int uuid_error;
    field_t util, mem_used, mem_reserved, mem_total, temp, power_mw, power_limit_mw;
    int mem_v2_error;
    procs_t procs, gprocs;
} gpu_t;

typedef struct { unsigned int gpu; unsigned int memory; } nvmlUtilization_t;
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct {
    unsigned int version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;
typedef struct { unsigned int pid; unsigned long long usedGpuMemory; } nvmlProcessInfo_v1_t;
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlProcessInfo_v2_t;

static gpu_t gpus[MAX_GPUS];
static int gpu_count = 0;
static int initialised = 0;
static char driver[64] = "550.54.15";
static unsigned int name_pids[MAX_NAMES];
static char name_values[MAX_NAMES][128];
static int name_count = 0;

static void log_call(const char *what) {
    const char *path = getenv("FAKE_NVML_LOG");
    if (!path || !*path) return;
    FILE *f = fopen(path, "a");
    if (!f) return;
    fprintf(f, "%s\n", what);
    fclose(f);
}

static void parse_field(field_t *f, const char *value) {
    memset(f, 0, sizeof(*f));
    if (value[0] == '!') { f->error = atoi(value + 1); return; }
    const char *p = value;
    while (*p && f->n < MAX_SEQ) {
        f->values[f->n++] = strtoull(p, NULL, 10);
        p = strchr(p, ',');
        if (!p) break;
        p++;
    }
}

static void parse_procs(procs_t *procs, const char *value) {
    memset(procs, 0, sizeof(*procs));
    if (value[0] == '!') { procs->error = atoi(value + 1); return; }
    const char *p = value;
    while (*p && procs->n < MAX_PROCS) {
        proc_t *item = &procs->items[procs->n++];
        item->pid = (unsigned int)strtoul(p, NULL, 10);
        const char *colon = strchr(p, ':');
        const char *comma = strchr(p, ',');
        if (colon && (!comma || colon < comma))
            item->mem = strncmp(colon + 1, "na", 2) == 0 ? ~0ULL : strtoull(colon + 1, NULL, 10);
        if (!comma) break;
        p = comma + 1;
    }
}

static void set_text(char *dest, size_t size, int *error, const char *value) {
    if (value[0] == '!') { *error = atoi(value + 1); return; }
    *error = 0;
    snprintf(dest, size, "%s", value);
}

static void set_gpu_key(gpu_t *g, const char *key, const char *value) {
    if (!strcmp(key, "name")) set_text(g->name, sizeof g->name, &g->name_error, value);
    else if (!strcmp(key, "uuid")) set_text(g->uuid, sizeof g->uuid, &g->uuid_error, value);
    else if (!strcmp(key, "util")) parse_field(&g->util, value);
    else if (!strcmp(key, "mem_used")) parse_field(&g->mem_used, value);
    else if (!strcmp(key, "mem_reserved")) parse_field(&g->mem_reserved, value);
    else if (!strcmp(key, "mem_total")) parse_field(&g->mem_total, value);
    else if (!strcmp(key, "temp")) parse_field(&g->temp, value);
    else if (!strcmp(key, "power_mw")) parse_field(&g->power_mw, value);
    else if (!strcmp(key, "power_limit_mw")) parse_field(&g->power_limit_mw, value);
    else if (!strcmp(key, "mem_v2")) g->mem_v2_error = value[0] == '!' ? atoi(value + 1) : 0;
    else if (!strcmp(key, "procs")) parse_procs(&g->procs, value);
    else if (!strcmp(key, "gprocs")) parse_procs(&g->gprocs, value);
}

static void default_gpu(int i) {
    gpu_t *g = &gpus[i];
    memset(g, 0, sizeof(*g));
    snprintf(g->name, sizeof g->name, "Fake GPU %d", i);
    snprintf(g->uuid, sizeof g->uuid, "GPU-00000000-0000-0000-0000-%012d", i);
    parse_field(&g->util, "0");
    parse_field(&g->mem_used, "0");
    parse_field(&g->mem_reserved, "0");
    parse_field(&g->mem_total, "85899345920");
    parse_field(&g->temp, "30");
    parse_field(&g->power_mw, "70000");
    parse_field(&g->power_limit_mw, "700000");
}

/* Read $FAKE_NVML_CONFIG; returns the code nvmlInit should return. */
static int load_config(void) {
    int init_code = 0;
    gpu_count = 0;
    name_count = 0;
    for (int i = 0; i < MAX_GPUS; i++) default_gpu(i);
    const char *path = getenv("FAKE_NVML_CONFIG");
    if (!path || !*path) return 0;
    FILE *f = fopen(path, "r");
    if (!f) return 999; /* NVML_ERROR_UNKNOWN: the test's script is missing */
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        char *eq = strchr(line, '=');
        if (!eq || line[0] == '#') continue;
        *eq = 0;
        const char *key = line, *value = eq + 1;
        if (!strcmp(key, "init")) init_code = atoi(value);
        else if (!strcmp(key, "count")) {
            gpu_count = atoi(value);
            if (gpu_count > MAX_GPUS) gpu_count = MAX_GPUS;
        } else if (!strcmp(key, "driver")) snprintf(driver, sizeof driver, "%s", value);
        else if (!strncmp(key, "proc.", 5) && name_count < MAX_NAMES) {
            name_pids[name_count] = (unsigned int)strtoul(key + 5, NULL, 10);
            snprintf(name_values[name_count], sizeof name_values[0], "%s", value);
            name_count++;
        } else if (key[0] >= '0' && key[0] <= '9') {
            char *dot = strchr(key, '.');
            int index = atoi(key);
            if (dot && index < MAX_GPUS) set_gpu_key(&gpus[index], dot + 1, value);
        }
    }
    fclose(f);
    return init_code;
}

/* The next value of a scripted field, or its error code. */
static nvmlReturn_t next_value(field_t *f, unsigned long long *out) {
    if (f->error) return f->error;
    if (f->n == 0) return NVML_ERROR_NOT_SUPPORTED;
    *out = f->values[f->next];
    f->next = (f->next + 1) % f->n;
    return NVML_SUCCESS;
}

static gpu_t *device(void *handle) {
    gpu_t *g = (gpu_t *)handle;
    if (g < gpus || g >= gpus + gpu_count) return NULL;
    return g;
}

#define CHECK_DEVICE(h) \
    if (!initialised) return NVML_ERROR_UNINITIALIZED; \
    gpu_t *g = device(h); \
    if (!g) return NVML_ERROR_INVALID_ARGUMENT;

static nvmlReturn_t do_init(const char *what) {
    log_call(what);
    int code = load_config();
    if (code) return code;
    initialised++;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlInit(void) { return do_init("nvmlInit"); }
nvmlReturn_t nvmlInit_v2(void) { return do_init("nvmlInit_v2"); }
nvmlReturn_t nvmlInitWithFlags(unsigned int flags) { (void)flags; return do_init("nvmlInitWithFlags"); }

nvmlReturn_t nvmlShutdown(void) {
    log_call("nvmlShutdown");
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    initialised--;
    return NVML_SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) {
    case 0: return "Success";
    case 3: return "Not Supported";
    case 9: return "Driver Not Loaded";
    default: return "Fake NVML error";
    }
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    if (strlen(driver) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(version, driver);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned int length) {
    const char *v = "12.550.54.15";
    if (strlen(v) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(version, v);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlSystemGetProcessName(unsigned int pid, char *name, unsigned int length) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    for (int i = 0; i < name_count; i++) {
        if (name_pids[i] == pid) {
            snprintf(name, length, "%s", name_values[i]);
            return NVML_SUCCESS;
        }
    }
    return NVML_ERROR_NOT_FOUND;
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    *count = (unsigned int)gpu_count;
    return NVML_SUCCESS;
}
nvmlReturn_t nvmlDeviceGetCount(unsigned int *count) { return nvmlDeviceGetCount_v2(count); }

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **handle) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    if (index >= (unsigned int)gpu_count) return NVML_ERROR_INVALID_ARGUMENT;
    *handle = &gpus[index];
    return NVML_SUCCESS;
}
nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, void **handle) {
    return nvmlDeviceGetHandleByIndex_v2(index, handle);
}

nvmlReturn_t nvmlDeviceGetName(void *handle, char *name, unsigned int length) {
    CHECK_DEVICE(handle);
    if (g->name_error) return g->name_error;
    if (strlen(g->name) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(name, g->name);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUUID(void *handle, char *uuid, unsigned int length) {
    CHECK_DEVICE(handle);
    if (g->uuid_error) return g->uuid_error;
    if (strlen(g->uuid) + 1 > length) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(uuid, g->uuid);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(void *handle, nvmlUtilization_t *util) {
    CHECK_DEVICE(handle);
    unsigned long long v = 0;
    nvmlReturn_t r = next_value(&g->util, &v);
    if (r) return r;
    util->gpu = (unsigned int)v;
    util->memory = (unsigned int)v / 2;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(void *handle, nvmlMemory_t *memory) {
    CHECK_DEVICE(handle);
    unsigned long long used = 0, reserved = 0, total = 0;
    nvmlReturn_t r = next_value(&g->mem_used, &used);
    if (!r) r = next_value(&g->mem_total, &total);
    if (r) return r;
    next_value(&g->mem_reserved, &reserved);
    /* as the real v1 call: "used" counts the driver's reserved memory too */
    memory->total = total;
    memory->used = used + reserved;
    memory->free = total - memory->used;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(void *handle, nvmlMemory_v2_t *memory) {
    CHECK_DEVICE(handle);
    if (g->mem_v2_error) return g->mem_v2_error;
    if (memory->version != NVML_MEMORY_V2) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    unsigned long long used = 0, reserved = 0, total = 0;
    nvmlReturn_t r = next_value(&g->mem_used, &used);
    if (!r) r = next_value(&g->mem_total, &total);
    if (r) return r;
    next_value(&g->mem_reserved, &reserved);
    memory->total = total;
    memory->reserved = reserved;
    memory->used = used;
    memory->free = total - used - reserved;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTemperature(void *handle, int sensor, unsigned int *temp) {
    CHECK_DEVICE(handle);
    if (sensor != 0) return NVML_ERROR_INVALID_ARGUMENT;
    unsigned long long v = 0;
    nvmlReturn_t r = next_value(&g->temp, &v);
    if (!r) *temp = (unsigned int)v;
    return r;
}

nvmlReturn_t nvmlDeviceGetPowerUsage(void *handle, unsigned int *power) {
    CHECK_DEVICE(handle);
    unsigned long long v = 0;
    nvmlReturn_t r = next_value(&g->power_mw, &v);
    if (!r) *power = (unsigned int)v;
    return r;
}

nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(void *handle, unsigned int *limit) {
    CHECK_DEVICE(handle);
    unsigned long long v = 0;
    nvmlReturn_t r = next_value(&g->power_limit_mw, &v);
    if (!r) *limit = (unsigned int)v;
    return r;
}

nvmlReturn_t nvmlDeviceGetPowerManagementLimit(void *handle, unsigned int *limit) {
    return nvmlDeviceGetEnforcedPowerLimit(handle, limit);
}

/* NVML's two-call protocol: infos NULL (or too small) -> INSUFFICIENT_SIZE with the count. */
static nvmlReturn_t list_procs(procs_t *procs, unsigned int *count, void *infos, int v1) {
    if (procs->error) return procs->error;
    if (procs->n == 0) { *count = 0; return NVML_SUCCESS; }
    if (infos == NULL || *count < (unsigned int)procs->n) {
        *count = (unsigned int)procs->n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    for (int i = 0; i < procs->n; i++) {
        if (v1) {
            nvmlProcessInfo_v1_t *out = (nvmlProcessInfo_v1_t *)infos + i;
            out->pid = procs->items[i].pid;
            out->usedGpuMemory = procs->items[i].mem;
        } else {
            nvmlProcessInfo_v2_t *out = (nvmlProcessInfo_v2_t *)infos + i;
            out->pid = procs->items[i].pid;
            out->usedGpuMemory = procs->items[i].mem;
            out->gpuInstanceId = 0xFFFFFFFFu;
            out->computeInstanceId = 0xFFFFFFFFu;
        }
    }
    *count = (unsigned int)procs->n;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(void *handle, unsigned int *count, void *infos) {
    CHECK_DEVICE(handle);
    return list_procs(&g->procs, count, infos, 0);
}
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(void *handle, unsigned int *count, void *infos) {
    CHECK_DEVICE(handle);
    return list_procs(&g->procs, count, infos, 0);
}
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(void *handle, unsigned int *count, void *infos) {
    CHECK_DEVICE(handle);
    return list_procs(&g->procs, count, infos, 1);
}
nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v3(void *handle, unsigned int *count, void *infos) {
    CHECK_DEVICE(handle);
    return list_procs(&g->gprocs, count, infos, 0);
}
nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v2(void *handle, unsigned int *count, void *infos) {
    CHECK_DEVICE(handle);
    return list_procs(&g->gprocs, count, infos, 0);
}
nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses(void *handle, unsigned int *count, void *infos) {
    CHECK_DEVICE(handle);
    return list_procs(&g->gprocs, count, infos, 1);
}
