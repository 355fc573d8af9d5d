#Requires -RunAsAdministrator
<#
.SYNOPSIS
    Set up netjobs-agent.exe on a Windows machine: an inbound firewall rule for its TCP
    port, and a scheduled task that starts it at boot (or at logon).

.DESCRIPTION
    Run once, in an elevated PowerShell (Windows PowerShell 5.1 or PowerShell 7):

        powershell -ExecutionPolicy Bypass -File install-agent.ps1 -NewToken -StartNow

    What it does:
      1. Checks that the agent executable exists (default: C:\Program Files\NetJobs\netjobs-agent.exe).
      2. Token: with -NewToken, writes a fresh random token to -TokenFile if that file does not
         exist yet; otherwise the file must already exist (copy it from the controller).
         The file is made readable only by the task's user, SYSTEM and Administrators.
      3. Firewall: replaces the inbound rule "NetJobs-Agent-TCP" allowing TCP -Port (16192).
      4. Scheduled task "NetJobs Agent": runs the agent as -User (default: you) with
         `--port <Port> --token-file <TokenFile>`, at system start-up (S4U logon: no password
         stored, runs whether or not the user is logged on, no console window), or with
         -AtLogon in the user's session when they log on (console window visible).
         Normal process priority (the benchmark commands inherit it), no time limit,
         restarted every minute up to 3 times if it fails, one instance at a time.
    Run it again to change settings: it replaces the rule and the task.
    With -Uninstall it removes both (the executable and the token file are left alone).

    Written from the documentation of the NetFirewall and ScheduledTasks modules; it has
    not been run by the NetJobs CI (see docs/executables.md).

.EXAMPLE
    .\install-agent.ps1 -NewToken -StartNow
.EXAMPLE
    .\install-agent.ps1 -AgentPath D:\tools\netjobs-agent.exe -TokenFile D:\tools\token -AtLogon
.EXAMPLE
    .\install-agent.ps1 -Uninstall
#>
[CmdletBinding()]
param(
    [string] $AgentPath = (Join-Path $env:ProgramFiles 'NetJobs\netjobs-agent.exe'),
    [string] $TokenFile = (Join-Path $env:ProgramData 'NetJobs\token'),
    [ValidateRange(1, 65535)]
    [int] $Port = 16192,
    # The account the agent (and so every benchmark command) runs as.
    [string] $User = "$env:USERDOMAIN\$env:USERNAME",
    # Start at logon of -User, in their session, instead of at system start-up.
    [switch] $AtLogon,
    # Write a new random token to -TokenFile if it does not exist.
    [switch] $NewToken,
    # Start the task right away.
    [switch] $StartNow,
    # Firewall profiles the rule applies to (lab VMs are often on a "Public" network).
    [ValidateSet('Any', 'Domain', 'Private', 'Public', 'Domain,Private')]
    [string] $FirewallProfile = 'Any',
    [string] $TaskName = 'NetJobs Agent',
    [switch] $Uninstall
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$RuleName = 'NetJobs-Agent-TCP'

function Remove-AgentSetup {
    $task = Get-ScheduledTask -TaskName $TaskName -ErrorAction SilentlyContinue
    if ($task) {
        Stop-ScheduledTask -TaskName $TaskName -ErrorAction SilentlyContinue
        Unregister-ScheduledTask -TaskName $TaskName -Confirm:$false
        Write-Host "Removed the scheduled task '$TaskName'."
    }
    $rule = Get-NetFirewallRule -Name $RuleName -ErrorAction SilentlyContinue
    if ($rule) {
        Remove-NetFirewallRule -Name $RuleName
        Write-Host "Removed the firewall rule '$RuleName'."
    }
}

if ($Uninstall) {
    Remove-AgentSetup
    return
}

# 1. The executable.
$AgentPath = [System.IO.Path]::GetFullPath($AgentPath)
if (-not (Test-Path -LiteralPath $AgentPath -PathType Leaf)) {
    throw "No agent at '$AgentPath': copy netjobs-agent.exe there, or pass -AgentPath."
}

# 2. The token file.
$TokenFile = [System.IO.Path]::GetFullPath($TokenFile)
if (-not (Test-Path -LiteralPath $TokenFile -PathType Leaf)) {
    if (-not $NewToken) {
        throw "No token file at '$TokenFile': copy the controller's token file there, " +
              "or pass -NewToken to create one (then copy it to the controller)."
    }
    $folder = Split-Path -Parent $TokenFile
    if (-not (Test-Path -LiteralPath $folder)) {
        New-Item -ItemType Directory -Path $folder -Force | Out-Null
    }
    $bytes = New-Object byte[] 32
    $rng = [System.Security.Cryptography.RandomNumberGenerator]::Create()
    try { $rng.GetBytes($bytes) } finally { $rng.Dispose() }
    # URL-safe base64 without padding: 43 ASCII characters, no BOM, no line-ending issues.
    $secret = [Convert]::ToBase64String($bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_')
    [System.IO.File]::WriteAllText($TokenFile, $secret + "`n", [System.Text.Encoding]::ASCII)
    Write-Host "Wrote a new token to $TokenFile. Copy this file to the controller."
}
# Only the agent's user, SYSTEM and Administrators may read the token.
& icacls.exe $TokenFile /inheritance:r /grant:r "${User}:(R)" '*S-1-5-18:(F)' '*S-1-5-32-544:(F)' | Out-Null
if ($LASTEXITCODE -ne 0) {
    throw "icacls could not restrict access to '$TokenFile' (exit $LASTEXITCODE)."
}

# 3. The firewall rule (replaced if it exists).
Get-NetFirewallRule -Name $RuleName -ErrorAction SilentlyContinue | Remove-NetFirewallRule
New-NetFirewallRule -Name $RuleName -DisplayName "NetJobs agent (TCP $Port)" `
    -Description 'Lets NetJobs controllers reach netjobs-agent.' `
    -Direction Inbound -Action Allow -Protocol TCP -LocalPort $Port `
    -Profile $FirewallProfile | Out-Null
Write-Host "Firewall: inbound TCP $Port allowed (rule '$RuleName', profile $FirewallProfile)."

# 4. The scheduled task (replaced if it exists).
$arguments = "--port $Port --token-file `"$TokenFile`""
$action = New-ScheduledTaskAction -Execute $AgentPath -Argument $arguments `
    -WorkingDirectory (Split-Path -Parent $AgentPath)
if ($AtLogon) {
    $trigger = New-ScheduledTaskTrigger -AtLogOn -User $User
    $principal = New-ScheduledTaskPrincipal -UserId $User -LogonType Interactive -RunLevel Limited
} else {
    $trigger = New-ScheduledTaskTrigger -AtStartup
    $principal = New-ScheduledTaskPrincipal -UserId $User -LogonType S4U -RunLevel Limited
}
# Priority 5: normal process priority. The default (7) is "below normal", which every
# benchmark command started by the agent would inherit.
$settings = New-ScheduledTaskSettingsSet -ExecutionTimeLimit ([TimeSpan]::Zero) `
    -RestartCount 3 -RestartInterval (New-TimeSpan -Minutes 1) -MultipleInstances IgnoreNew `
    -Priority 5 -StartWhenAvailable -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries
Register-ScheduledTask -TaskName $TaskName -Action $action -Trigger $trigger `
    -Principal $principal -Settings $settings -Force `
    -Description "netjobs-agent on TCP $Port (NetJobs: synchronized benchmark starts)" | Out-Null
$when = if ($AtLogon) { "when $User logs on" } else { 'at system start-up' }
Write-Host "Scheduled task '$TaskName': runs $AgentPath $arguments as $User $when."

if ($StartNow) {
    Start-ScheduledTask -TaskName $TaskName
    Start-Sleep -Seconds 2
    $state = (Get-ScheduledTask -TaskName $TaskName).State
    Write-Host "Started the task (state: $state). Check from the controller: netjobs check CONFIG"
}
